// Package failpoint injects faults at named points of the code, in test builds
// only (build tag "failpoints"); in normal builds Hit is an empty function the
// compiler removes.
//
// In a test build, the environment variable SSI_FAILPOINTS lists points and what
// happens when the code reaches them:
//
//	SSI_FAILPOINTS='migrate/source/after-dump=exit;migrate/target/after-restore=error'
//
//	exit        the process exits at once with status 86, as if killed (no
//	            deferred functions run, nothing is cleaned up), after
//	            writing "failpoint NAME: exiting" to stderr
//	error       Hit returns an error, as if the step had failed, after
//	            writing "failpoint NAME: returning an error" to stderr
//	sleep(DUR)  Hit sleeps DUR (a time.ParseDuration string), then returns nil
//	wait(PATH)  Hit creates PATH.reached, then blocks until the file PATH
//	            exists (at most 5 minutes) and returns nil: a test learns
//	            that the process holds there, acts (cuts the network, kills
//	            etcd), then lets it go on, with no timing window to miss
//
// The e2e tests restart agents with SSI_FAILPOINTS set to crash them between
// every two steps of a migration, and check the migration invariant afterwards.
package failpoint
