package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/placement"
)

// Config configures an agent. Field names follow the `ssi agent` flags.
type Config struct {
	// Name is the node name (--name); unique in the cluster.
	Name string
	// Listen is the API address, host:port (--listen).
	Listen string
	// Advertise is the API address other agents and clients use (--advertise);
	// defaults to Listen.
	Advertise string
	// DataDir holds job directories and the embedded etcd's data (--data-dir).
	DataDir string
	// EtcdEndpoints names an external etcd (--etcd-endpoints). Empty: run an
	// embedded etcd listening on EtcdClientURL and EtcdPeerURL.
	EtcdEndpoints []string
	EtcdClientURL string
	EtcdPeerURL   string
	// EtcdMember makes the agent run a member of the cluster's etcd, which
	// it joins through its endpoints (--etcd-endpoints, or those that came
	// with --join) on its first start (--etcd-member). Once the data dir
	// holds a member, the member restarts from it, with or without the flag.
	EtcdMember bool
	// EtcdDialTimeout bounds the first contact with etcd (--etcd-dial-timeout).
	EtcdDialTimeout time.Duration
	// CPUs and Memory override the capacity offered to jobs (--cpus, --memory);
	// zero means the machine's.
	CPUs   float64
	Memory int64
	// CPUSet confines every job of the node to these CPUs (--cpuset, a Linux
	// CPU list such as 0 or 0-1); empty: all. With it, CPUs defaults to the
	// number of CPUs in the set.
	CPUSet string
	Labels map[string]string
	// Placement is the default policy for jobs placed by this agent (--placement).
	Placement placement.Policy
	// CgroupParent is the cgroup under which node/gpid cgroups are made
	// (--cgroup-parent); clusters sharing a kernel need different parents.
	CgroupParent string
	// Retention is how long ended jobs stay in the live table, with their
	// output (--retention); then their records are archived.
	Retention time.Duration
	// LeftRetention is how long a node that left (drained and stopped) stays
	// listed before the elected housekeeper removes it (--left-retention;
	// negative: never). The service controller's leader applies its own.
	LeftRetention time.Duration
	// History is how long an archived record is kept (--history): ssi wait
	// and ssi ps --exited find the job until then.
	History time.Duration
	// LeaseTTL is the node lease TTL in seconds; a dead node is NotReady after it.
	LeaseTTL int
	// Stopping, when it closes, asks the agent to drain its node before it
	// stops (ssi agent on SIGTERM): the node's jobs are moved away, at most
	// DrainTimeout (--drain-timeout), the node is marked Left, then Drained
	// is closed and the caller cancels Run's context. A nil Stopping: no
	// drain on stop (--no-drain).
	Stopping     <-chan struct{}
	Drained      chan<- struct{}
	DrainTimeout time.Duration
	// NoBalancer keeps this agent out of the election of the balancer's leader
	// and of the drain controller's (--balancer=false): the agents that move
	// jobs for the cluster. Whether the balancer runs at all is cluster state
	// (ssi balance on|off), not a flag.
	NoBalancer bool
	// MetricsListen, if set, is a HOST:PORT where the agent serves its
	// Prometheus metrics, GET /metrics, in plain HTTP (--metrics-listen).
	MetricsListen string
	// NATSListen and NATSClusterListen are the embedded broker's client and
	// route listeners (--nats-listen, --nats-cluster-listen; default the
	// API's host, port+2 and port+3); NoNATS turns the broker off (--nats=false).
	// NATSMaxMemory and NATSMaxStore cap JetStream (agent/msg.go).
	NATSListen, NATSClusterListen string
	NATSMaxMemory, NATSMaxStore   int64
	NoNATS                        bool
	// ShimExe is the ssi-shim binary each job's shim and init run from
	// (--shim-binary).
	ShimExe string
	// Insecure turns off TLS and authentication (--insecure): debugging only.
	Insecure bool
	// Join and Token make a new node join a cluster (--join ADDR --token TOKEN):
	// the agent at Join issues this node's certificate. Ignored once the data
	// dir holds one.
	Join  string
	Token string
	// InitCA makes an agent without a certificate create a new cluster CA even
	// with an external etcd (--init-ca); without an external etcd the first
	// agent always does.
	InitCA bool
	// AdminUser names the admin whose config the first agent of a cluster
	// writes to <data-dir>/pki/admin.json (--admin-user, default root).
	AdminUser string
	// NodeCertLifetime is how long this node's certificate is valid for when
	// it renews it (--node-cert-lifetime); it renews with a third left.
	NodeCertLifetime time.Duration
	Version          string
	Log              *slog.Logger
}

// Validate checks the config and fills defaults. Errors name the flag, the value
// and the rule.
func (c *Config) Validate() error {
	var errs []error
	if !pki.ValidNodeName(c.Name) {
		errs = append(errs, fmt.Errorf("--name %q: want 1-32 lower-case letters, digits and dashes, not starting or ending with a dash", c.Name))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want HOST:PORT: %w", c.Listen, err))
	}
	if c.Advertise == "" {
		c.Advertise = c.Listen
	}
	if host, _, err := net.SplitHostPort(c.Advertise); err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
		errs = append(errs, fmt.Errorf("--advertise %q: want a HOST:PORT other nodes can reach (not 0.0.0.0)", c.Advertise))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	if len(c.EtcdEndpoints) == 0 || c.EtcdMember {
		host, _, _ := net.SplitHostPort(c.Advertise)
		scheme := "https://"
		if c.Insecure {
			scheme = "http://"
		}
		if c.EtcdClientURL == "" {
			c.EtcdClientURL = scheme + net.JoinHostPort(host, "2379")
		}
		if c.EtcdPeerURL == "" {
			c.EtcdPeerURL = scheme + net.JoinHostPort(host, "2380")
		}
	}
	if (c.Join == "") != (c.Token == "") {
		errs = append(errs, errors.New("--join and --token go together: --join ADDR --token TOKEN (from 'ssi token create')"))
	}
	if c.Join != "" {
		if _, _, err := net.SplitHostPort(c.Join); err != nil {
			errs = append(errs, fmt.Errorf("--join %q: want HOST:PORT of an agent of the cluster: %w", c.Join, err))
		}
		if c.Insecure {
			errs = append(errs, errors.New("--join needs TLS: it cannot be used with --insecure"))
		}
		if c.InitCA {
			errs = append(errs, errors.New("--join and --init-ca exclude each other: join an existing cluster, or create a new one"))
		}
	}
	if c.NodeCertLifetime == 0 {
		c.NodeCertLifetime = pki.NodeLifetime
	}
	if c.NodeCertLifetime < access.MinNodeCertLifetime || c.NodeCertLifetime > pki.NodeLifetime {
		errs = append(errs, fmt.Errorf("--node-cert-lifetime %s: want %s to %s", c.NodeCertLifetime, access.MinNodeCertLifetime, pki.NodeLifetime))
	}
	if c.AdminUser == "" {
		c.AdminUser = "root"
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen %q: want HOST:PORT (plain HTTP: localhost or a management network): %w", c.MetricsListen, err))
		}
	}
	if c.EtcdDialTimeout == 0 {
		c.EtcdDialTimeout = 5 * time.Second
	}
	if c.CPUs < 0 {
		errs = append(errs, fmt.Errorf("--cpus %g: must not be negative", c.CPUs))
	}
	if c.CPUSet != "" {
		list, n, err := isolate.CheckCPUSet(c.CPUSet)
		if err != nil {
			errs = append(errs, fmt.Errorf("--cpuset %q: %w; want a list of this machine's online CPUs such as 0, 0-1 or 0,2", c.CPUSet, err))
		} else {
			c.CPUSet = list
			if c.CPUs == 0 {
				c.CPUs = float64(n)
			}
		}
	}
	if c.Memory < 0 {
		errs = append(errs, fmt.Errorf("--memory %d: must not be negative", c.Memory))
	}
	if _, err := placement.ParsePolicy(string(c.Placement)); err != nil {
		errs = append(errs, fmt.Errorf("--placement: %w", err))
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "/ssi"
	}
	if !strings.HasPrefix(c.CgroupParent, "/") || strings.Contains(c.CgroupParent, "..") {
		errs = append(errs, fmt.Errorf("--cgroup-parent %q: want an absolute cgroup path like /ssi", c.CgroupParent))
	}
	if c.Retention == 0 {
		c.Retention = time.Hour
	}
	if c.Retention < time.Second {
		errs = append(errs, fmt.Errorf("--retention %s: want 1s or more (how long ended jobs stay in the live table, e.g. 1h)", c.Retention))
	}
	if c.History == 0 {
		c.History = pidtable.DefaultHistory
	}
	if c.History < time.Second {
		errs = append(errs, fmt.Errorf("--history %s: want 1s or more (how long archived jobs are kept, e.g. 24h)", c.History))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("--drain-timeout %s: must not be negative (use --no-drain to stop without draining)", c.DrainTimeout))
	}
	if (c.Stopping == nil) != (c.Drained == nil) {
		errs = append(errs, errors.New("agent: Stopping and Drained go together"))
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 5
	}
	if c.LeaseTTL < 2 || c.LeaseTTL > 60 {
		errs = append(errs, fmt.Errorf("lease TTL %ds: want 2 to 60", c.LeaseTTL))
	}
	if fi, err := os.Stat(c.ShimExe); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		errs = append(errs, fmt.Errorf("--shim-binary %q: not an executable file (build it with 'make build'): %v", c.ShimExe, err))
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return errors.Join(errs...)
}
