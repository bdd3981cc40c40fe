package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of services (ssi apply; the service controller, service/).
const (
	// ServiceLeaderPrefix is the service controller's election prefix.
	ServiceLeaderPrefix = prefix + "services/leader"
	serviceSpecPrefix   = prefix + "services/spec/"
	serviceStatusPrefix = prefix + "services/status/"
)

// ServiceKey returns the etcd key of a service's desired state.
func ServiceKey(name string) string { return serviceSpecPrefix + name }

// ServiceStatusKey returns the etcd key of a service's controller status.
func ServiceStatusKey(name string) string { return serviceStatusPrefix + name }

// ErrServiceNotFound is returned for a service name with no record.
var ErrServiceNotFound = errors.New("pidtable: no such service")

// Restart policies (systemd's Restart=; ssi supports these three).
const (
	RestartNo        = "no"
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
)

// Spread values ([X-SSI] Spread=).
const (
	SpreadNode = "node" // at most one live replica per node
	SpreadAny  = "any"
)

// ServiceSpec is what a unit file asks for, normalized (service.Parse).
type ServiceSpec struct {
	Description string   `json:"description,omitempty"`
	Argv        []string `json:"argv"`
	Env         []string `json:"env,omitempty"`
	Workdir     string   `json:"workdir,omitempty"`
	// WorkdirOptional: WorkingDirectory=-PATH, the user's home when PATH
	// does not exist on the node.
	WorkdirOptional bool `json:"workdir_optional,omitempty"`
	// User is the account replicas run as (User=); "" is the service's owner.
	User string `json:"user,omitempty"`
	// Restart is RestartNo, RestartOnFailure or RestartAlways; RestartSec
	// the delay before a restart (the first step of the backoff).
	Restart    string        `json:"restart"`
	RestartSec time.Duration `json:"restart_sec,omitempty"`
	// CPUs (CPUQuota=/100) and Memory (MemoryMax=) are each replica's limits.
	CPUs   float64 `json:"cpus,omitempty"`
	Memory int64   `json:"memory,omitempty"`
	// KillSignal stops a replica; after StopTimeout it is killed (SIGKILL).
	KillSignal  string        `json:"kill_signal,omitempty"`
	StopTimeout time.Duration `json:"stop_timeout,omitempty"`
	// Replicas is how many copies run; Spread and Constraints where.
	Replicas    int               `json:"replicas"`
	Spread      string            `json:"spread"`
	Constraints map[string]string `json:"constraints,omitempty"`
	// Pinned replicas (Migratable=no) are never moved by the balancer.
	Pinned bool `json:"pinned,omitempty"`
	// CheckpointEvery ([X-SSI] CheckpointEvery=) gives each replica
	// automatic checkpoints: a replica whose node dies is restored from
	// them under its gpid (package failover) instead of replaced.
	CheckpointEvery time.Duration `json:"checkpoint_every,omitempty"`
}

// Service is a service's desired state, /ssi/services/spec/<name>: written by
// ssi apply, scale and rm (compare-and-swap), read by the controller.
type Service struct {
	Name string `json:"name"`
	// Owner is the user who applied the service first; only they (and
	// admins) may change it. OwnerAdmin: the owner was an admin then (so
	// replicas may run as another User=). Immutable.
	Owner      string      `json:"owner"`
	OwnerAdmin bool        `json:"owner_admin,omitempty"`
	Spec       ServiceSpec `json:"spec"`
	// Source is the unit file it came from (file name only, for display).
	Source string `json:"source,omitempty"`
	// Hash is the normalized spec's hash (an unchanged file changes nothing);
	// RunHash the hash of what a replica runs (a change rolls the replicas).
	Hash    string `json:"hash"`
	RunHash string `json:"run_hash"`
	// Generation grows with every change; Rollout is how the last change
	// replaces replicas: "rolling" (one at a time) or "now" (all at once).
	Generation int64  `json:"generation"`
	Rollout    string `json:"rollout,omitempty"`
	// Removing: ssi service rm asked; the controller stops every replica,
	// then deletes the record.
	Removing bool      `json:"removing,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

// ServiceStatus is the controller's view of a service,
// /ssi/services/status/<name>: written by the elected controller only (its
// writes are guarded by its election key), so a new leader carries on from it.
type ServiceStatus struct {
	Name string `json:"name"`
	// Generation is the service generation the counters below belong to.
	Generation int64 `json:"generation"`
	// Want and Running are the replicas wanted and running; Nodes where.
	Want    int      `json:"want"`
	Running int      `json:"running"`
	Nodes   []string `json:"nodes,omitempty"`
	// Restarts counts replicas restarted; Failures the failures in a row
	// (the backoff's exponent); NextStart is when a start may be tried again.
	Restarts    int       `json:"restarts"`
	Failures    int       `json:"failures,omitempty"`
	LastFailure time.Time `json:"last_failure,omitzero"`
	NextStart   time.Time `json:"next_start,omitzero"`
	// Completed counts replicas that ended and are not restarted (Restart=no,
	// or a clean exit with on-failure): the service wants that many fewer.
	Completed int `json:"completed,omitempty"`
	// Handled are the gpids of replicas the controller has dealt with: ended
	// ones it counted, ones it stops, ones on dead nodes it replaced.
	Handled []uint64 `json:"handled,omitempty"`
	// State: running, starting, updating, degraded, restarting, crash-loop,
	// removing, stopped; Message says why.
	State   string    `json:"state"`
	Message string    `json:"message,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// GetService returns a service's record and its mod revision.
func (s *Store) GetService(ctx context.Context, name string) (Service, int64, error) {
	resp, err := s.c.Get(ctx, ServiceKey(name))
	if err != nil {
		return Service{}, 0, fmt.Errorf("pidtable: get service %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Service{}, 0, fmt.Errorf("%w: %s", ErrServiceNotFound, name)
	}
	var svc Service
	if err := decode(resp.Kvs[0].Value, &svc, false); err != nil {
		return Service{}, 0, fmt.Errorf("pidtable: decode service %s: %w", name, err)
	}
	return svc, resp.Kvs[0].ModRevision, nil
}

// PutService writes svc if its record is still at rev (0: it must not exist).
// It returns ErrChanged when another write came first.
func (s *Store) PutService(ctx context.Context, svc Service, rev int64) error {
	val, err := json.Marshal(svc)
	if err != nil {
		return fmt.Errorf("pidtable: encode service %s: %w", svc.Name, err)
	}
	key := ServiceKey(svc.Name)
	tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: write service %s: %w", svc.Name, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: service %s", ErrChanged, svc.Name)
	}
	return nil
}

// Services lists every service record, sorted by name.
func (s *Store) Services(ctx context.Context) ([]Service, error) {
	resp, err := s.c.Get(ctx, serviceSpecPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("pidtable: list services: %w", err)
	}
	out := make([]Service, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var svc Service
		if err := decode(kv.Value, &svc, false); err != nil {
			return nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		out = append(out, svc)
	}
	return out, nil
}

// ServiceStatuses returns every service's status by name.
func (s *Store) ServiceStatuses(ctx context.Context) (map[string]ServiceStatus, error) {
	resp, err := s.c.Get(ctx, serviceStatusPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("pidtable: list service statuses: %w", err)
	}
	out := map[string]ServiceStatus{}
	for _, kv := range resp.Kvs {
		var st ServiceStatus
		if err := decode(kv.Value, &st, false); err != nil {
			return nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		out[st.Name] = st
	}
	return out, nil
}

// PutServiceStatus writes st if guard holds (the controller's leadership).
// It returns ErrChanged when the guard fails.
func (s *Store) PutServiceStatus(ctx context.Context, st ServiceStatus, guard clientv3.Cmp) error {
	val, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("pidtable: encode service status %s: %w", st.Name, err)
	}
	tr, err := s.c.Txn(ctx).If(guard).Then(clientv3.OpPut(ServiceStatusKey(st.Name), string(val))).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: write service status %s: %w", st.Name, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: service status %s: no longer the controller", ErrChanged, st.Name)
	}
	return nil
}

// DeleteService removes a service being removed (still at rev) and its
// status, if guard holds.
func (s *Store) DeleteService(ctx context.Context, name string, rev int64, guard clientv3.Cmp) error {
	tr, err := s.c.Txn(ctx).If(guard, clientv3.Compare(clientv3.ModRevision(ServiceKey(name)), "=", rev)).
		Then(clientv3.OpDelete(ServiceKey(name)), clientv3.OpDelete(ServiceStatusKey(name))).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: delete service %s: %w", name, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: service %s", ErrChanged, name)
	}
	return nil
}

// ServiceCache is a watched copy of the service records: an Informer over
// the service specs.
type ServiceCache struct {
	inf *Informer[Service]
}

// NewServiceCache returns a cache that Run fills and keeps current.
func (s *Store) NewServiceCache(log *slog.Logger) *ServiceCache {
	decode := func(_ string, val []byte) (Service, bool) {
		var svc Service
		return svc, decode(val, &svc, false) == nil
	}
	return &ServiceCache{inf: NewInformer(s.c, "service cache", serviceSpecPrefix, decode, log)}
}

// Synced is closed once the first list is in.
func (c *ServiceCache) Synced() <-chan struct{} { return c.inf.Synced() }

// Changed is closed at the next change of the copy.
func (c *ServiceCache) Changed() <-chan struct{} { return c.inf.Changed() }

// Run lists and watches until ctx ends.
func (c *ServiceCache) Run(ctx context.Context) { c.inf.Run(ctx) }

// Services returns the cached records with their mod revisions, by name.
func (c *ServiceCache) Services() ([]Service, []int64) {
	items, _ := c.inf.List()
	svcs, revs := make([]Service, len(items)), make([]int64, len(items))
	for i, it := range items {
		svcs[i], revs[i] = it.Val, it.Rev
	}
	return svcs, revs
}
