package localcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/netns"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/shim"
)

// APIPort is the port every node's agent listens on.
const APIPort = 7070

// Config describes a local cluster.
type Config struct {
	// Name prefixes every namespace, link and cgroup of the cluster: 1-10
	// lower-case letters and digits, starting with a letter.
	Name  string
	Nodes int
	// EtcdMembers is how many nodes (node1, node2, ...) hold a member of the
	// cluster's etcd, embedded in their agents: 1 (the default, also for 0)
	// or an odd number up to Nodes and MaxEtcdMembers. The other agents are
	// clients of every member.
	EtcdMembers int
	// Subnet is an IPv4 /24 or larger: the bridge takes .1, node i takes .10+i.
	Subnet string
	// Binary is the ssi binary the agents run.
	Binary string
	// DataDir holds each node's data dir (DataDir/node1, ...).
	DataDir string
	// StateDir holds the cluster's state file.
	StateDir string
	// ConfigFile, if set, receives the CLI config pointing at node1.
	ConfigFile string
	// AgentArgs are extra flags for every agent; NodeArgs extra flags for
	// one node's agent (by node name, node1...), after AgentArgs.
	AgentArgs []string
	NodeArgs  map[string][]string
	Log       *slog.Logger
}

// State is a running cluster, as saved in its state file.
type State struct {
	Name   string `json:"name"`
	Bridge string `json:"bridge"`
	Subnet string `json:"subnet"`
	Binary string `json:"binary"`
	// BinaryID fingerprints the binary the agents run (sha256), so Up notices a
	// rebuild.
	BinaryID   string              `json:"binary_id"`
	DataDir    string              `json:"data_dir"`
	StateDir   string              `json:"state_dir"`
	ConfigFile string              `json:"config_file,omitempty"`
	AgentArgs  []string            `json:"agent_args,omitempty"`
	NodeArgs   map[string][]string `json:"node_args,omitempty"`
	// EtcdMembers is how many of the first nodes hold an etcd member; 0 in
	// the state of a cluster made before it was a choice: 1.
	EtcdMembers int         `json:"etcd_members,omitempty"`
	Nodes       []NodeState `json:"nodes"`
}

// NodeState is one node of a running cluster.
type NodeState struct {
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	HostIf    string      `json:"host_if"`
	IP        string      `json:"ip"`
	DataDir   string      `json:"data_dir"`
	Agent     shim.ProcID `json:"agent"`
}

// API returns the node's agent address.
func (n NodeState) API() string { return net.JoinHostPort(n.IP, strconv.Itoa(APIPort)) }

// Members is how many of the first nodes hold an etcd member.
func (s *State) Members() int { return max(s.EtcdMembers, 1) }

// EtcdEndpoints are the client URLs of the cluster's etcd members.
func (s *State) EtcdEndpoints() []string {
	scheme := "https://"
	if s.Insecure() {
		scheme = "http://"
	}
	var out []string
	for _, n := range s.Nodes[:min(s.Members(), len(s.Nodes))] {
		out = append(out, scheme+net.JoinHostPort(n.IP, "2379"))
	}
	return out
}

// Endpoint is the CLI endpoint of the cluster (node1's agent), HOST:PORT.
func (s *State) Endpoint() string { return s.Nodes[0].API() }

// Insecure reports whether the cluster's agents run with --insecure.
func (s *State) Insecure() bool {
	for _, a := range s.AgentArgs {
		if a == "--insecure" {
			return true
		}
	}
	return false
}

// AdminConfig is the path of the admin client config node1's agent wrote when
// it created the cluster CA.
func (s *State) AdminConfig() string {
	return filepath.Join(s.Nodes[0].DataDir, "pki", pki.AdminFile)
}

// Client returns an API client acting as the cluster's admin.
func (s *State) Client() (*api.Client, error) {
	if s.Insecure() {
		return api.NewClient(s.Endpoint(), "root", 0)
	}
	c, err := pki.LoadClientConfig(s.AdminConfig())
	if err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	conf, err := c.TLS()
	if err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	return api.NewTLSClient(s.Endpoint(), conf)
}

// CgroupParent is the cgroup parent the cluster's agents use.
func (s *State) CgroupParent() string { return "/ssi-" + s.Name }

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

func statePath(dir, name string) string { return filepath.Join(dir, name+".json") }

// Load reads a cluster's state file.
func Load(stateDir, name string) (*State, error) {
	b, err := os.ReadFile(statePath(stateDir, name))
	if err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("localcluster: decode %s: %w", statePath(stateDir, name), err)
	}
	return &s, nil
}

func (s *State) save() error {
	if err := os.MkdirAll(s.StateDir, 0o755); err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	tmp := statePath(s.StateDir, s.Name) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("localcluster: write state: %w", err)
	}
	return os.Rename(tmp, statePath(s.StateDir, s.Name))
}

// Healthy reports whether every node's agent runs and answers.
func (s *State) Healthy(ctx context.Context) bool {
	for _, n := range s.Nodes {
		if !n.Agent.Alive() || ping(ctx, n) != nil {
			return false
		}
	}
	return true
}

// Outcome says what Up did.
type Outcome string

// Outcomes of Up.
const (
	Started   Outcome = "started"
	AlreadyUp Outcome = "is already up"
	Restarted Outcome = "restarted its agents on the new binary"
)

// binaryID fingerprints a file by content (a rebuild rewrites the file even when
// nothing changed, so its mtime says nothing).
func binaryID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MaxEtcdMembers bounds Config.EtcdMembers: etcd's own advice is 3 or 5
// members, 7 at most (every write waits for a majority).
const MaxEtcdMembers = 7

// Check says what is wrong with c, naming the flag of 'ssi local up' and what
// to pass instead; Up checks it before it makes anything.
func (c Config) Check() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("localcluster: name %q: want 1-10 lower-case letters and digits, starting with a letter", c.Name)
	}
	if c.Nodes < 1 || c.Nodes > 200 {
		return fmt.Errorf("localcluster: %d nodes: want 1 to 200", c.Nodes)
	}
	prefix, err := netip.ParsePrefix(c.Subnet)
	if err != nil || !prefix.Addr().Is4() || prefix.Bits() > 24 {
		return fmt.Errorf("localcluster: subnet %q: want an IPv4 prefix of /24 or larger, like 10.210.0.0/24", c.Subnet)
	}
	return CheckEtcdMembers(c.EtcdMembers, c.Nodes)
}

// CheckEtcdMembers checks a count of etcd members for a cluster of nodes
// (0 means 1).
func CheckEtcdMembers(members, nodes int) error {
	switch {
	case members == 0 || members == 1:
		return nil
	case members < 0:
		return fmt.Errorf("--etcd-members %d: want 1 (the default: one member, on node1) or 3 (survives the loss of any one)", members)
	case members%2 == 0:
		instead := fmt.Sprintf("--etcd-members %d (survives the loss of %d) or %d", members+1, members/2, members-1)
		if members+1 > nodes {
			instead = fmt.Sprintf("--etcd-members %d, or more nodes and --etcd-members %d", members-1, members+1)
		}
		return fmt.Errorf("--etcd-members %d: want an odd number: %d members need %d of them up (a majority), so they survive the loss of %d, no more than %d would; pass %s", members, members, members/2+1, (members-1)/2, members-1, instead)
	case members > MaxEtcdMembers:
		return fmt.Errorf("--etcd-members %d: want at most %d (every write waits for a majority of members); pass 3 or 5", members, MaxEtcdMembers)
	case members > nodes:
		return fmt.Errorf("--etcd-members %d with --nodes %d: each member runs in one node's agent; pass --nodes %d or more, or --etcd-members %d or fewer", members, nodes, members, nodes-(1-nodes%2))
	}
	return nil
}

// Up starts the cluster. A healthy cluster of that name is left alone, or, if
// the binary was rebuilt since its agents started, its agents are restarted one
// by one on the new binary (jobs keep running). Leftovers of a broken cluster
// are removed first.
func Up(ctx context.Context, c Config) (st *State, outcome Outcome, err error) {
	if err := c.Check(); err != nil {
		return nil, "", err
	}
	prefix := netip.MustParsePrefix(c.Subnet)
	c.EtcdMembers = max(c.EtcdMembers, 1)
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if old, err := Load(c.StateDir, c.Name); err == nil {
		if old.Healthy(ctx) && old.Members() != c.EtcdMembers {
			return old, "", fmt.Errorf("localcluster: cluster %s is up with %d etcd member(s), not %d: take it down first ('make down' or 'ssi local down --name %s'), then up again with --etcd-members %d", c.Name, old.Members(), c.EtcdMembers, c.Name, c.EtcdMembers)
		}
		if old.Healthy(ctx) && len(old.Nodes) == c.Nodes {
			id := binaryID(c.Binary)
			if old.BinaryID == id && old.Binary == c.Binary {
				return old, AlreadyUp, nil
			}
			// A rolling upgrade: each agent restarted in place (SIGUSR2:
			// no drain), its jobs adopted by the new binary.
			old.Binary, old.BinaryID = c.Binary, id
			for _, n := range old.Nodes {
				if err := old.StopAgent(n.Name, syscall.SIGUSR2); err != nil {
					return old, "", err
				}
				if err := old.StartAgent(ctx, n.Name); err != nil {
					return old, "", err
				}
			}
			// A cluster made before mTLS gets its CA on this restart.
			return old, Restarted, old.writeConfig()
		}
		c.Log.Info("removing the previous, broken cluster", "cluster", c.Name)
	}
	if err := Down(ctx, c.StateDir, c.Name, c.Log); err != nil {
		return nil, "", err
	}
	base := prefix.Masked().Addr().As4()
	ip := func(last int) net.IP { return net.IPv4(base[0], base[1], base[2], byte(last)) }
	mask := net.CIDRMask(prefix.Bits(), 32)
	st = &State{
		Name: c.Name, Bridge: c.Name + "-br", Subnet: c.Subnet, Binary: c.Binary, BinaryID: binaryID(c.Binary),
		DataDir: c.DataDir, StateDir: c.StateDir, ConfigFile: c.ConfigFile, AgentArgs: c.AgentArgs,
		NodeArgs: c.NodeArgs, EtcdMembers: c.EtcdMembers,
	}
	defer func() {
		if err != nil {
			_ = st.save() // so Down finds what was made
			_ = Down(context.WithoutCancel(ctx), c.StateDir, c.Name, c.Log)
		}
	}()
	if err := netns.EnsureBridge(st.Bridge, &net.IPNet{IP: ip(1), Mask: mask}); err != nil {
		return st, "", err
	}
	for i := 1; i <= c.Nodes; i++ {
		n := NodeState{
			Name:      fmt.Sprintf("node%d", i),
			Namespace: fmt.Sprintf("%s-node%d", c.Name, i),
			HostIf:    fmt.Sprintf("%s-v%d", c.Name, i),
			IP:        ip(10 + i).String(),
			DataDir:   filepath.Join(c.DataDir, fmt.Sprintf("node%d", i)),
		}
		st.Nodes = append(st.Nodes, n)
		if err := netns.CreateNode(netns.Node{Namespace: n.Namespace, HostIf: n.HostIf, Bridge: st.Bridge, Addr: &net.IPNet{IP: ip(10 + i), Mask: mask}}); err != nil {
			return st, "", err
		}
	}
	for i := range st.Nodes {
		if err := st.StartAgent(ctx, st.Nodes[i].Name); err != nil {
			return st, "", err
		}
	}
	if err := st.writeConfig(); err != nil {
		return st, "", err
	}
	return st, Started, st.save()
}

// writeConfig copies the admin's config (root's only, 0600, like
// /etc/kubernetes/admin.conf) to the cluster's ConfigFile, if it has one.
func (s *State) writeConfig() error {
	if s.ConfigFile == "" || s.Insecure() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.ConfigFile), 0o755); err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	b, err := os.ReadFile(s.AdminConfig())
	if err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	if err := os.WriteFile(s.ConfigFile, b, 0o600); err != nil {
		return fmt.Errorf("localcluster: write CLI config: %w", err)
	}
	if err := os.Chmod(s.ConfigFile, 0o600); err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	return nil
}

// memberIndex is node's index among the nodes holding an etcd member, or -1.
func (s *State) memberIndex(node string) int {
	for i, n := range s.Nodes[:min(s.Members(), len(s.Nodes))] {
		if n.Name == node {
			return i
		}
	}
	return -1
}

func (s *State) node(name string) (*NodeState, error) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("localcluster: no node %q in cluster %s", name, s.Name)
}

// StartAgent starts the agent of node and waits until it serves.
func (s *State) StartAgent(ctx context.Context, node string) error {
	return s.StartAgentEnv(ctx, node, nil)
}

// StartAgentEnv is StartAgent with extra environment variables for the agent
// (e.g. SSI_FAILPOINTS in tests).
func (s *State) StartAgentEnv(ctx context.Context, node string, env []string) error {
	n, err := s.node(node)
	if err != nil {
		return err
	}
	if n.Agent.Alive() {
		return fmt.Errorf("localcluster: agent of %s is already running (pid %d)", node, n.Agent.PID)
	}
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(n.DataDir, "agent.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	defer logf.Close()
	args := []string{"agent", "--name", n.Name, "--listen", n.API(), "--data-dir", n.DataDir, "--cgroup-parent", s.CgroupParent()}
	if n.Name != s.Nodes[0].Name {
		// node1 started etcd; node2..nodeM join it as members (their
		// agents restart their members later, from their data dirs),
		// reaching it, as on real machines, through the endpoints that
		// come with --join (an --insecure cluster has no join: through
		// --etcd-endpoints); the others are clients of every member.
		member := s.memberIndex(n.Name) >= 0
		if member {
			args = append(args, "--etcd-member")
		}
		if !member || s.Insecure() {
			args = append(args, "--etcd-endpoints", strings.Join(s.EtcdEndpoints(), ","))
		}
		if !s.Insecure() && !pki.HasNodeCert(filepath.Join(n.DataDir, "pki")) {
			// First start: join through node1 with a fresh, short-lived token.
			cl, err := s.Client()
			if err != nil {
				return err
			}
			tok, err := cl.CreateToken(ctx, 10*time.Minute)
			if err != nil {
				return fmt.Errorf("localcluster: join token for %s: %w", node, err)
			}
			args = append(args, "--join", s.Nodes[0].API(), "--token", tok.Token)
		}
	}
	// Local nodes share one kernel and are stopped and started all the
	// time (tests, make down): no drain on stop unless asked for
	// (--no-drain=false in AgentArgs or NodeArgs).
	args = append(args, "--no-drain")
	args = append(append(args, s.AgentArgs...), s.NodeArgs[n.Name]...)
	cmd := exec.Command(s.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := netns.StartIn(n.Namespace, cmd); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it if it dies while we live
	n.Agent, _ = shim.Identify(cmd.Process.Pid)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("localcluster: agent of %s exited (%v): %s (log: %s)", node, err, logTail(filepath.Join(n.DataDir, "agent.log"), 3), filepath.Join(n.DataDir, "agent.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if ping(ctx, *n) == nil {
			return s.save()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localcluster: agent of %s not serving on %s after 60s; see %s", node, n.API(), filepath.Join(n.DataDir, "agent.log"))
		}
	}
}

// StopAgent stops node's agent with sig (SIGKILL to simulate a crash) and waits
// until it is gone. Its jobs keep running.
func (s *State) StopAgent(node string, sig syscall.Signal) error {
	n, err := s.node(node)
	if err != nil {
		return err
	}
	if err := stopProc(n.Agent, sig, 10*time.Second); err != nil {
		return fmt.Errorf("localcluster: stop agent of %s: %w", node, err)
	}
	n.Agent = shim.ProcID{}
	return s.save()
}

// stopProc signals id (if it is still that process) and waits for it to go,
// escalating to SIGKILL after timeout.
func stopProc(id shim.ProcID, sig syscall.Signal, timeout time.Duration) error {
	if !id.Alive() {
		return nil
	}
	_ = syscall.Kill(id.PID, sig)
	deadline := time.Now().Add(timeout)
	for id.Alive() {
		if time.Now().After(deadline) {
			if sig == syscall.SIGKILL {
				return fmt.Errorf("pid %d survives SIGKILL", id.PID)
			}
			_ = syscall.Kill(id.PID, syscall.SIGKILL)
			sig, deadline = syscall.SIGKILL, time.Now().Add(timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// ping asks n's agent for its health, as n itself (its node certificate) once
// it has one; plain HTTP for an --insecure agent, which has none.
func ping(ctx context.Context, n NodeState) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	url := "http://" + n.API() + "/v1/healthz"
	if dir := filepath.Join(n.DataDir, "pki"); pki.HasNodeCert(dir) {
		creds, err := pki.LoadNode(dir)
		if err != nil {
			return err
		}
		tr.TLSClientConfig, url = creds.ClientTLS(), "https://"+n.API()+"/v1/healthz"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Down stops the cluster's agents and jobs and removes everything Up made. It is
// idempotent; without a state file it removes what it finds by name.
func Down(ctx context.Context, stateDir, name string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	st, err := Load(stateDir, name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if st == nil {
		st = &State{Name: name, Bridge: name + "-br", StateDir: stateDir}
	}
	var errs []error
	// Reverse order: node1 runs the embedded etcd, which takes seconds to close
	// while other agents are still connected to it.
	for i := len(st.Nodes) - 1; i >= 0; i-- {
		n := st.Nodes[i]
		if err := stopProc(n.Agent, syscall.SIGTERM, 5*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stop agent of %s: %w", n.Name, err))
		}
	}
	for _, n := range st.Nodes {
		stopJobs(filepath.Join(n.DataDir, "jobs"))
		_ = os.RemoveAll(migrate.ImagesRoot(n.DataDir))
	}
	// Job cgroups: the whole per-cluster parent, nested node/gpid groups included.
	if cg, err := isolate.OpenCgroup(st.CgroupParent()); err == nil {
		if err := cg.Destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	nss, err := netns.List(name + "-node")
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range st.Nodes {
		if err := netns.DeleteLink(n.HostIf); err != nil {
			errs = append(errs, err)
		}
	}
	if err := netns.DeleteLink(st.Bridge); err != nil {
		errs = append(errs, err)
	}
	if st.ConfigFile != "" && st.Nodes != nil {
		if b, err := os.ReadFile(st.ConfigFile); err == nil && strings.Contains(string(b), st.Endpoint()) {
			_ = os.Remove(st.ConfigFile)
			_ = os.Remove(filepath.Dir(st.ConfigFile)) // only if empty
		}
	}
	if st.DataDir != "" {
		if err := os.RemoveAll(st.DataDir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(statePath(stateDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	_ = os.Remove(stateDir) // only if empty
	if len(errs) > 0 {
		return fmt.Errorf("localcluster: down %s: %w", name, errors.Join(errs...))
	}
	log.Debug("cluster down", "cluster", name)
	return nil
}

// stopJobs kills every job under a node's jobs dir and waits for the shims to
// record the ends and remove the cgroups.
func stopJobs(dir string) {
	entries, _ := os.ReadDir(dir)
	var shims []shim.ProcID
	for _, e := range entries {
		var st shim.State
		if shim.ReadJSON(filepath.Join(dir, e.Name()), shim.StateFile, &st) != nil {
			continue
		}
		if st.Init.Alive() {
			_ = syscall.Kill(st.Init.PID, syscall.SIGKILL)
		}
		shims = append(shims, st.Shim)
	}
	for _, s := range shims {
		_ = stopProc(s, 0, 5*time.Second) // signal 0: just wait, then SIGKILL
	}
}

// logTail returns the last n lines of a log file, joined with " | ".
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
