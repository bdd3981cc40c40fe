// Package timer runs timers: systemd .timer units (ssi apply nightly.timer)
// that start their service once per tick, somewhere in the cluster.
//
//   - Parse reads a .timer unit: [Timer] OnCalendar= (package calendar, any
//     number of lines), OnActiveSec=, OnUnitActiveSec=, OnUnitInactiveSec=,
//     Persistent=, RandomizedDelaySec=, AccuracySec=, Unit=, and [X-SSI]
//     Schedule= (a crontab expression, robfig/cron), Overlap=skip|queue|replace
//     and MissAfter=, with warnings (file:line) for what ssi ignores.
//   - Due is the schedule as a pure function: a timer, its last tick and its
//     last run in, the ticks due by now (to fire, or missed) out.
//   - Store keeps timers and their ticks in etcd: /ssi/timers/spec/NAME and
//     /ssi/timers/ticks/NAME/SCHEDULED. A tick is claimed, with its run's gpid
//     allocated, in one transaction (Claim); the run's process record is
//     created in the transaction that moves the tick from claimed to started
//     (StartConds, StartOps, pidtable.Store.CreateClaimed). So a tick runs at
//     most once, whichever controller dies when; docs/ARCHITECTURE.md says
//     why in full.
//   - Controller is the elected loop (the service controller's pattern):
//     each pass claims the ticks due, records skipped and missed ones, and
//     starts claimed ticks that have not started through a Runner (the
//     agent's: the chosen node's agent spawns the run).
//   - Requests carries out ssi apply, timers, timer status|run|rm without
//     HTTP; the agent's routes are thin handlers over it (agent/timers.go).
package timer
