package pidtable

import "time"

// Timers (package timer): the records, as services' are here. A timer is
// /ssi/timers/spec/NAME, its ticks /ssi/timers/ticks/NAME/SCHEDULED.

// Overlap policies ([X-SSI] Overlap=): what a tick does while the timer's
// last run still runs.
const (
	OverlapSkip    = "skip"    // the tick is recorded as skipped (systemd's way)
	OverlapQueue   = "queue"   // the tick runs once the last run ended
	OverlapReplace = "replace" // the last run is stopped, the tick runs
)

// DefaultMissAfter is how late a tick may start before it counts as missed
// (a controller down, a failover): [X-SSI] MissAfter=.
const DefaultMissAfter = 30 * time.Second

// TimerSpec is what a .timer unit says (package timer parses it).
type TimerSpec struct {
	Description string `json:"description,omitempty"`
	// OnCalendar holds calendar events (systemd.time(7)); Schedule a
	// crontab expression ([X-SSI] Schedule=).
	OnCalendar []string `json:"on_calendar,omitempty"`
	Schedule   string   `json:"schedule,omitempty"`
	// OnActive is after the timer was applied; OnUnitActive after the last
	// run started; OnUnitInactive after it ended (the cluster's records).
	OnActive       time.Duration `json:"on_active,omitempty"`
	OnUnitActive   time.Duration `json:"on_unit_active,omitempty"`
	OnUnitInactive time.Duration `json:"on_unit_inactive,omitempty"`
	// Persistent: of the ticks missed, the last runs once when the
	// controller is back.
	Persistent      bool          `json:"persistent,omitempty"`
	RandomizedDelay time.Duration `json:"randomized_delay,omitempty"`
	Accuracy        time.Duration `json:"accuracy,omitempty"`
	// Unit is the service unit the timer starts (Unit=, default NAME.service).
	Unit      string        `json:"unit"`
	Overlap   string        `json:"overlap"`
	MissAfter time.Duration `json:"miss_after"`
}

// Tick states.
const (
	TickClaimed = "claimed" // its run's gpid is allocated; the run has not started
	TickStarted = "started" // its run's record was created (exactly once)
	TickFailed  = "failed"  // its run could not be started; it never ran
	TickSkipped = "skipped" // the last run still ran (Overlap=skip)
	TickMissed  = "missed"  // it was due while no controller could start it
)

// Timer is a timer's record, /ssi/timers/spec/NAME: written by ssi apply
// (compare-and-swap), read by the controller.
type Timer struct {
	Name string `json:"name"`
	// Owner applied it first; only they (and admins) may change it; its runs
	// run as the owner (or the service's User=, if the owner was an admin).
	Owner      string    `json:"owner"`
	OwnerAdmin bool      `json:"owner_admin,omitempty"`
	Spec       TimerSpec `json:"spec"`
	// Service is the service unit it starts (Spec.Unit), as parsed.
	Service ServiceSpec `json:"service"`
	// Source holds the unit files as applied.
	Source     map[string]string `json:"source,omitempty"`
	Hash       string            `json:"hash"`
	Generation int64             `json:"generation"`
	Created    time.Time         `json:"created"`
	// Updated is when the schedule last changed: ticks before it are not
	// due (a changed schedule does not catch up on the old one's ticks).
	Updated time.Time `json:"updated"`
}

// Tick is one tick of a timer, /ssi/timers/ticks/NAME/SCHEDULED: created
// once (claimed, skipped or missed), and moved claimed → started or failed
// once.
type Tick struct {
	Timer string `json:"timer"`
	// Scheduled is the elapse the tick is for (its key); Due adds the
	// randomized delay.
	Scheduled time.Time `json:"scheduled"`
	Due       time.Time `json:"due"`
	State     string    `json:"state"`
	// GPID is its run's, allocated when it was claimed; Node runs it.
	GPID    uint64    `json:"gpid,omitempty"`
	Node    string    `json:"node,omitempty"`
	Claimed time.Time `json:"claimed,omitzero"`
	Started time.Time `json:"started,omitzero"`
	// Manual: ssi timer run; CatchUp: the missed tick Persistent= runs.
	Manual   bool   `json:"manual,omitempty"`
	CatchUp  bool   `json:"catch_up,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// By is the node whose controller wrote it.
	By string `json:"by,omitempty"`
}
