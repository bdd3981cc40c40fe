package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/isolate"
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
	// Retention is how long ended jobs stay listed, with their output (--retention).
	Retention time.Duration
	// LeaseTTL is the node lease TTL in seconds; a dead node is NotReady after it.
	LeaseTTL int
	// NoBalancer keeps this agent out of the election of the balancer's leader
	// (--balancer=false). Whether the balancer runs at all is cluster state
	// (ssi balance on|off), not a flag.
	NoBalancer bool
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

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Validate checks the config and fills defaults. Errors name the flag, the value
// and the rule.
func (c *Config) Validate() error {
	var errs []error
	if !nodeNameRE.MatchString(c.Name) {
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
	if len(c.EtcdEndpoints) == 0 {
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
	if c.NodeCertLifetime < minNodeCertLifetime || c.NodeCertLifetime > pki.NodeLifetime {
		errs = append(errs, fmt.Errorf("--node-cert-lifetime %s: want %s to %s", c.NodeCertLifetime, minNodeCertLifetime, pki.NodeLifetime))
	}
	if c.AdminUser == "" {
		c.AdminUser = "root"
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
