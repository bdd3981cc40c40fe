package benchkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/localcluster"
)

// Bounds of the cluster's set-up and teardown.
const (
	buildLimit    = 5 * time.Minute  // one go build
	readyLimit    = 60 * time.Second // every node Ready after up
	teardownLimit = 5 * time.Minute  // localcluster.Down at the end
)

// ClusterFlags are the flags of a benchmark's own local cluster.
type ClusterFlags struct {
	Name, Subnet      string
	StateDir, DataDir string
	Bin, Repo         string
}

// Register adds -name, -subnet, -state-dir, -data-dir, -bin and -repo to fs.
// name is the default cluster name and the prefix every -name must start
// with (Check); subnet the default subnet. Each benchmark has its own name
// and /24, apart from the default cluster ("ssi", 10.210.0.0/24) and the e2e
// clusters (e2e<pid>, 10.213.x.0/24).
func (c *ClusterFlags) Register(fs *flag.FlagSet, name, subnet string) {
	fs.StringVar(&c.Name, "name", name, "cluster name; must start with "+name+" (never another cluster's)")
	fs.StringVar(&c.Subnet, "subnet", subnet, "cluster subnet")
	fs.StringVar(&c.StateDir, "state-dir", "/run/ssi-local", "state dir of local clusters")
	fs.StringVar(&c.DataDir, "data-dir", "", "data dir of the cluster (default /var/lib/ssi-local/NAME)")
	fs.StringVar(&c.Bin, "bin", "", "directory holding prebuilt ssi and ssi-shim (default: build them into a temporary directory)")
	fs.StringVar(&c.Repo, "repo", "", "repository root (default: found from the working directory)")
}

// Check validates the flags after parsing and fills in defaults: the name
// must start with prefix, so that no other cluster is ever torn down.
func (c *ClusterFlags) Check(prefix string) error {
	if !strings.HasPrefix(c.Name, prefix) {
		return fmt.Errorf("-name %q: must start with %s, so that no other cluster is touched", c.Name, prefix)
	}
	if c.DataDir == "" {
		c.DataDir = filepath.Join("/var/lib/ssi-local", c.Name)
	}
	return nil
}

// Binaries are the ssi and ssi-shim binaries a benchmark's cluster runs.
type Binaries struct {
	Dir       string
	SSI, Shim string
	// Prebuilt: taken from -bin, not built (and not removed by Remove).
	Prebuilt bool
}

// BuildBinaries builds ssi and ssi-shim from the repository at repo into a new
// temporary directory named prefix-bin-*, so that bin/ is neither used nor
// disturbed; env is added to go build's environment. With prebuilt set it
// takes them from that directory instead. Build output goes to stderr.
func BuildBinaries(ctx context.Context, log *slog.Logger, repo, prebuilt, prefix string, env []string) (*Binaries, error) {
	b := &Binaries{}
	if prebuilt != "" {
		dir, err := filepath.Abs(prebuilt)
		if err != nil {
			return nil, err
		}
		b.Dir, b.Prebuilt = dir, true
	} else {
		dir, err := os.MkdirTemp("", prefix+"-bin-")
		if err != nil {
			return nil, err
		}
		_ = os.Chmod(dir, 0o755)
		b.Dir = dir
		for _, t := range [][2]string{{"ssi", "./cmd/ssi"}, {"ssi-shim", "./cmd/ssi-shim"}} {
			log.Info("building", "binary", t[0], "dir", dir)
			cctx, cancel := context.WithTimeout(ctx, buildLimit)
			cmd := exec.CommandContext(cctx, "go", "build", "-o", filepath.Join(dir, t[0]), t[1])
			cmd.Dir, cmd.Stdout, cmd.Stderr = repo, os.Stderr, os.Stderr
			cmd.Env = append(os.Environ(), env...)
			err := cmd.Run()
			cancel()
			if err != nil {
				b.Remove()
				return nil, fmt.Errorf("go build %s: %w", t[1], err)
			}
		}
	}
	b.SSI, b.Shim = filepath.Join(b.Dir, "ssi"), filepath.Join(b.Dir, "ssi-shim")
	for _, p := range []string{b.SSI, b.Shim} {
		if _, err := os.Stat(p); err != nil {
			b.Remove()
			return nil, fmt.Errorf("binary: %w", err)
		}
	}
	return b, nil
}

// Remove deletes the binaries built by BuildBinaries (not prebuilt ones).
func (b *Binaries) Remove() {
	if b != nil && !b.Prebuilt && b.Dir != "" {
		_ = os.RemoveAll(b.Dir)
	}
}

// ClaimName takes an exclusive lock on the cluster name for as long as the
// benchmark runs (release drops it). Every benchmark starts by removing a
// cluster of its name that an earlier run left behind; the lock makes a
// second benchmark started with the same -name fail with a message instead
// of tearing down the first one's cluster. The lock file is
// STATE-DIR/.NAME.bench-lock and holds the owner's PID.
func ClaimName(stateDir, name string) (release func(), err error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(stateDir, "."+name+".bench-lock")
	for range 3 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			owner, _ := os.ReadFile(path)
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("cluster %s is in use by another benchmark (pid %s holds %s): wait for it to end, or give this one another -name and -subnet",
					name, strings.TrimSpace(string(owner)), path)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// The holder before us may have removed the file between our open and
		// our lock: then the lock is on a file nobody else will see.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(path, &now) != nil || held.Ino != now.Ino {
			f.Close()
			continue
		}
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		return func() {
			_ = os.Remove(path)
			f.Close()
		}, nil
	}
	return nil, fmt.Errorf("lock %s: the file kept changing", path)
}

// ClusterConfig describes a benchmark's cluster.
type ClusterConfig struct {
	Flags ClusterFlags
	Nodes int
	// EtcdMembers is how many nodes hold an etcd member (0: one, node1).
	EtcdMembers int
	Binary      string // the ssi binary
	// NodeArgs are extra agent flags by node name (localcluster.Config).
	NodeArgs map[string][]string
	// CheckNode, if set, checks every Ready node; its error fails the start.
	CheckNode func(api.NodeInfo) error
	Log       *slog.Logger
}

// Cluster is a benchmark's running local cluster.
type Cluster struct {
	*localcluster.State
	API *api.Client
	// Env is the environment of CLI processes: this process's, with
	// SSI_CONFIG and SSI_ENDPOINT pointing at node1's agent as a user's
	// shell would.
	Env []string
}

// StartCluster removes a cluster of the name left by an earlier run (with
// -keep, or killed; ClaimName makes sure no running benchmark owns it),
// brings up a fresh one and waits until every node is Ready. On error the
// returned cluster may be partial, or nil; StopCluster removes it either way.
func StartCluster(ctx context.Context, c ClusterConfig) (*Cluster, error) {
	f := c.Flags
	if err := localcluster.Down(ctx, f.StateDir, f.Name, c.Log); err != nil {
		return nil, fmt.Errorf("remove the previous %s cluster: %w", f.Name, err)
	}
	c.Log.Info("starting cluster", "name", f.Name, "nodes", c.Nodes, "subnet", f.Subnet)
	st, _, err := localcluster.Up(ctx, localcluster.Config{
		Name: f.Name, Nodes: c.Nodes, EtcdMembers: c.EtcdMembers, Subnet: f.Subnet, Binary: c.Binary,
		DataDir: f.DataDir, StateDir: f.StateDir, NodeArgs: c.NodeArgs, Log: c.Log,
	})
	if err != nil {
		if st == nil {
			return nil, fmt.Errorf("cluster up: %w", err)
		}
		return &Cluster{State: st}, fmt.Errorf("cluster up: %w", err)
	}
	cl := &Cluster{State: st, Env: append(os.Environ(), "SSI_CONFIG="+st.AdminConfig(), "SSI_ENDPOINT="+st.Endpoint())}
	if cl.API, err = st.Client(); err != nil {
		return cl, err
	}
	return cl, cl.waitReady(ctx, c.Nodes, c.CheckNode)
}

// waitReady waits until want nodes are Ready.
func (c *Cluster) waitReady(ctx context.Context, want int, check func(api.NodeInfo) error) error {
	deadline := time.Now().Add(readyLimit)
	for {
		nodes, err := c.API.Nodes(ctx)
		ready := 0
		for _, n := range nodes {
			if !n.Ready {
				continue
			}
			ready++
			if check != nil {
				if err := check(n); err != nil {
					return err
				}
			}
		}
		if err == nil && ready == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d nodes Ready after %s (last error: %v)", ready, want, readyLimit, err)
		}
		if err := Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// StopCluster tears the cluster of f down (bounded by 5 minutes, whatever
// the benchmark's context) and returns the network namespaces of the name
// still there afterwards, which there should be none of.
func StopCluster(f ClusterFlags, log *slog.Logger) (left []string, err error) {
	log.Info("tearing the cluster down", "name", f.Name)
	ctx, cancel := context.WithTimeout(context.Background(), teardownLimit)
	defer cancel()
	err = localcluster.Down(ctx, f.StateDir, f.Name, log)
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), f.Name+"-") {
			left = append(left, e.Name())
		}
	}
	return left, err
}

// Prepared is what a benchmark sets up before its cluster (Prepare).
type Prepared struct {
	// Machine holds the machine's facts and the commit measured.
	Machine Machine
	// Repo is the repository's root; Bins the binaries built from it.
	Repo string
	Bins *Binaries
	// Release gives the cluster's name back (ClaimName).
	Release func()
}

// Prepare is the start every benchmark shares: the machine's facts, the
// cluster's name claimed (ClaimName), the repository found and the
// binaries built from it (CGO_ENABLED=0). On an error the name is given
// back; otherwise the caller calls Release when it is done.
func Prepare(ctx context.Context, log *slog.Logger, f ClusterFlags) (*Prepared, error) {
	p := &Prepared{Machine: ProbeMachine(ctx, checkpoint.DefaultCRIUPath, f.Name)}
	release, err := ClaimName(f.StateDir, f.Name)
	if err != nil {
		return p, err
	}
	if p.Repo, err = FindRepo(f.Repo); err != nil {
		release()
		return p, err
	}
	p.Machine.Commit = GitDescribe(p.Repo)
	if p.Bins, err = BuildBinaries(ctx, log, p.Repo, f.Bin, f.Name, []string{"CGO_ENABLED=0"}); err != nil {
		release()
		return p, err
	}
	p.Release = release
	return p, nil
}
