package netns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ssi-cluster/ssi/internal/testenv"
)

// TestNodeLifecycle makes what a local cluster's node needs, a bridge and a
// namespace reached through a veth pair, checks it from both sides, and
// removes it. Its names start with ssit and carry the test's PID, so that
// runs beside each other (and beside a local cluster) do not meet.
func TestNodeLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to create network namespaces and links")
	}
	id := os.Getpid() % 1000000
	// Link names: at most 15 bytes.
	bridge, hostIf, ns := fmt.Sprintf("ssit%db", id), fmt.Sprintf("ssit%dv", id), fmt.Sprintf("ssit%d-n", id)
	sub := id % 250
	brAddr := &net.IPNet{IP: net.IPv4(10, 251, byte(sub), 1), Mask: net.CIDRMask(24, 32)}
	nodeAddr := &net.IPNet{IP: net.IPv4(10, 251, byte(sub), 11), Mask: net.CIDRMask(24, 32)}
	t.Cleanup(func() {
		for _, err := range []error{Delete(ns), DeleteLink(hostIf), DeleteLink(bridge)} {
			if err != nil {
				t.Error(err)
			}
		}
	})

	// The bridge, twice: EnsureBridge leaves an existing one as it is.
	for range 2 {
		if err := EnsureBridge(bridge, brAddr); err != nil {
			t.Fatal(err)
		}
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	if br.Type() != "bridge" || br.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("%s: type %s, flags %v; want an up bridge", bridge, br.Type(), br.Attrs().Flags)
	}
	if !hasAddr(t, br, brAddr) {
		t.Fatalf("%s lacks %s", bridge, brAddr)
	}

	if err := CreateNode(Node{Namespace: ns, HostIf: hostIf, Bridge: bridge, Addr: nodeAddr}); err != nil {
		t.Fatal(err)
	}
	if got, err := List(ns); err != nil || !slices.Contains(got, ns) {
		t.Fatalf("List(%q) = %v, %v; want it listed", ns, got, err)
	}
	host, err := netlink.LinkByName(hostIf)
	if err != nil {
		t.Fatal(err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index || host.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("%s: master %d, flags %v; want up on %s (%d)", hostIf, host.Attrs().MasterIndex, host.Attrs().Flags, bridge, br.Attrs().Index)
	}
	// Inside, seen by a process StartIn put there: eth0 with the node's
	// address and lo, both up, and no link named after the host end.
	out := runIn(t, ns, "ip", "-o", "addr", "show")
	for _, want := range []string{"eth0    inet " + nodeAddr.String(), "lo    inet 127.0.0.1/8"} {
		if !strings.Contains(out, want) {
			t.Fatalf("in %s: no %q in:\n%s", ns, want, out)
		}
	}
	links := runIn(t, ns, "ip", "-o", "link", "show", "up")
	if !strings.Contains(links, ": eth0@") || !strings.Contains(links, ": lo:") || strings.Contains(links, hostIf) {
		t.Fatalf("in %s, links up:\n%s", ns, links)
	}
	// The calling thread and the rest of this process stay in the root
	// namespace: the host end is still seen here.
	if _, err := netlink.LinkByName(hostIf); err != nil {
		t.Fatalf("after StartIn, %s not seen from the test: %v", hostIf, err)
	}
	// The node reaches the host over the veth pair and the bridge: a TCP
	// connection from inside to a listener on the bridge's address.
	ln, err := net.Listen("tcp", net.JoinHostPort(brAddr.IP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b := make([]byte, 64)
		n, _ := c.Read(b)
		got <- fmt.Sprintf("%s from %s", b[:n], c.RemoteAddr().(*net.TCPAddr).IP)
	}()
	runIn(t, ns, "bash", "-c", "echo hello >/dev/tcp/"+strings.ReplaceAll(ln.Addr().String(), ":", "/"))
	if g, want := <-got, "hello\n from "+nodeAddr.IP.String(); g != want {
		t.Fatalf("from inside %s: got %q, want %q", ns, g, want)
	}

	// Removal: the namespace and its veth go, the bridge on request; removing
	// what is gone is no error.
	for range 2 {
		if err := Delete(ns); err != nil {
			t.Fatal(err)
		}
		if err := DeleteLink(hostIf); err != nil {
			t.Fatal(err)
		}
		if err := DeleteLink(bridge); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := List(ns); err != nil || len(got) != 0 {
		t.Fatalf("List(%q) after Delete = %v, %v; want none", ns, got, err)
	}
	for _, name := range []string{hostIf, bridge} {
		if _, err := netlink.LinkByName(name); err == nil {
			t.Fatalf("%s still exists after removal", name)
		}
	}
}

// TestCreateNodeUnknownBridge: a node on a bridge that does not exist is
// refused before anything is made.
func TestCreateNodeUnknownBridge(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to look up links")
	}
	id := os.Getpid() % 1000000
	ns := fmt.Sprintf("ssit%d-x", id)
	err := CreateNode(Node{Namespace: ns, HostIf: fmt.Sprintf("ssit%dx", id), Bridge: fmt.Sprintf("ssit%dnone", id),
		Addr: &net.IPNet{IP: net.IPv4(10, 251, 0, 11), Mask: net.CIDRMask(24, 32)}})
	if err == nil || !strings.Contains(err.Error(), "find bridge") {
		t.Fatalf("CreateNode on a missing bridge: %v", err)
	}
	if got, _ := List(ns); len(got) != 0 {
		_ = Delete(ns)
		t.Fatalf("namespace %v made despite the error", got)
	}
}

func hasAddr(t *testing.T, l netlink.Link, want *net.IPNet) bool {
	t.Helper()
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == want.String() {
			return true
		}
	}
	return false
}

// runIn runs a command inside the namespace ns and returns its output.
func runIn(t *testing.T, ns string, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := StartIn(ns, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v in %s: %v: %s", argv, ns, err, out.String())
	}
	return out.String()
}
