package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bound.
const Dir = "/run/netns"

// EnsureBridge creates the bridge name with address addr (if missing) and sets it up.
func EnsureBridge(name string, addr *net.IPNet) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("netns: create bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("netns: find bridge %s: %w", name, err)
		}
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: addr}); err != nil {
		return fmt.Errorf("netns: address %s on %s: %w", addr, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("netns: set %s up: %w", name, err)
	}
	return nil
}

// DeleteLink removes a link of the root namespace; a missing link is not an error.
func DeleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("netns: find link %s: %w", name, err)
	}
	// ENODEV: gone meanwhile, as the host end of a veth pair goes when the
	// namespace that holds its peer is deleted.
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("netns: delete link %s: %w", name, err)
	}
	return nil
}

// Node describes one node's network: namespace ns, reached through a veth pair
// whose host end hostIf is enslaved to bridge and whose inside end is eth0 with
// addr.
type Node struct {
	Namespace string
	HostIf    string
	Bridge    string
	Addr      *net.IPNet
}

// CreateNode creates n's namespace and veth pair and brings lo and eth0 up.
func CreateNode(n Node) (err error) {
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("netns: find bridge %s: %w", n.Bridge, err)
	}
	ns, err := newNamed(n.Namespace)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer func() {
		if err != nil {
			_ = DeleteLink(n.HostIf)
			_ = Delete(n.Namespace)
		}
	}()
	peer := n.HostIf + "p"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.HostIf, MasterIndex: br.Attrs().Index}, PeerName: peer}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("netns: create veth %s: %w", n.HostIf, err)
	}
	pl, err := netlink.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("netns: find veth %s: %w", peer, err)
	}
	if err := netlink.LinkSetNsFd(pl, int(ns)); err != nil {
		return fmt.Errorf("netns: move %s into %s: %w", peer, n.Namespace, err)
	}
	host, err := netlink.LinkByName(n.HostIf)
	if err != nil {
		return fmt.Errorf("netns: find veth %s: %w", n.HostIf, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("netns: set %s up: %w", n.HostIf, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netns: netlink in %s: %w", n.Namespace, err)
	}
	defer h.Close()
	in, err := h.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("netns: find %s in %s: %w", peer, n.Namespace, err)
	}
	if err := h.LinkSetName(in, "eth0"); err != nil {
		return fmt.Errorf("netns: rename %s to eth0: %w", peer, err)
	}
	if err := h.AddrAdd(in, &netlink.Addr{IPNet: n.Addr}); err != nil {
		return fmt.Errorf("netns: address %s on eth0 in %s: %w", n.Addr, n.Namespace, err)
	}
	for _, l := range []netlink.Link{in, nil} {
		if l == nil {
			if l, err = h.LinkByName("lo"); err != nil {
				return fmt.Errorf("netns: find lo in %s: %w", n.Namespace, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("netns: set %s up in %s: %w", l.Attrs().Name, n.Namespace, err)
		}
	}
	return nil
}

// newNamed creates a named namespace without leaving the calling thread in it.
func newNamed(name string) (vns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := vns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, fmt.Errorf("netns: current namespace: %w", err)
	}
	defer orig.Close()
	ns, nerr := vns.NewNamed(name)
	if err := vns.Set(orig); err != nil {
		// The thread is stuck in the wrong namespace: keep it locked so the
		// runtime retires it instead of reusing it.
		return 0, fmt.Errorf("netns: return to the root namespace: %w", err)
	}
	runtime.UnlockOSThread()
	if nerr != nil {
		return 0, fmt.Errorf("netns: create namespace %s: %w", name, nerr)
	}
	return ns, nil
}

// Delete removes the named namespace; a missing one is not an error. Links inside
// it disappear with it once no process holds it.
func Delete(name string) error {
	if _, err := os.Stat(filepath.Join(Dir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := vns.DeleteNamed(name); err != nil {
		return fmt.Errorf("netns: delete namespace %s: %w", name, err)
	}
	return nil
}

// List returns the named namespaces whose names start with prefix.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: list %s: %w", Dir, err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// StartIn starts cmd inside the named namespace. The child inherits the
// namespace of the thread that forks it, so the fork happens on a thread locked
// into ns; the caller's other goroutines are unaffected.
func StartIn(name string, cmd *exec.Cmd) error {
	ns, err := vns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("netns: open namespace %s: %w", name, err)
	}
	defer ns.Close()
	runtime.LockOSThread()
	orig, err := vns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: current namespace: %w", err)
	}
	defer orig.Close()
	if err := vns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: enter %s: %w", name, err)
	}
	startErr := cmd.Start()
	if err := vns.Set(orig); err != nil {
		return fmt.Errorf("netns: return to the root namespace: %w", err) // thread stays locked
	}
	runtime.UnlockOSThread()
	if startErr != nil {
		return fmt.Errorf("netns: start %s in %s: %w", cmd.Path, name, startErr)
	}
	return nil
}
