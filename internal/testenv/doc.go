// Package testenv decides what a test that cannot run on this machine does:
// skip, or, in CI, fail.
//
// `go test ./...` passes unprivileged: a test that needs root, CRIU or network
// namespaces skips with a reason. CI runs every test as root with all of those
// installed (.ci/run), so there a test that cannot run means the CI machine is
// broken, and a skip would hide it: in CI (the environment variable CI is
// "true") Skip fails the test instead. A test that may not run in CI for a
// known reason is listed in SSI_CI_SKIP (comma-separated test names): an
// exception, printed as such and counted by hack/test.sh.
//
//	if os.Geteuid() != 0 {
//		testenv.Skip(t, "needs root to create cgroups")
//	}
//
// Every skip, CI or not, is appended to the file SSI_SKIP_LOG names, if set,
// one line each (test name, "skip" or "ci-exception", reason, tab-separated):
// hack/test.sh prints and counts them.
package testenv
