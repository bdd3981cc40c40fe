package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
)

// scrape is one exposition of an agent's metrics, line by line.
type scrape []string

// value sums the samples of metric name whose labels include every one of
// labels (`state="running"`): 0 if there is none.
func (s scrape) value(name string, labels ...string) float64 {
	var sum float64
	for _, l := range s {
		if strings.HasPrefix(l, "#") || !strings.HasPrefix(l, name) {
			continue
		}
		rest := l[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // another metric whose name begins with name
		}
		ok := true
		for _, lb := range labels {
			ok = ok && strings.Contains(rest, lb)
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func getScrape(client *http.Client, url string) (scrape, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	var s scrape
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		s = append(s, sc.Text())
	}
	return s, sc.Err()
}

// TestMetrics: node1's agent started with --metrics-listen serves its
// Prometheus metrics there in plain HTTP: a job started on node1 counts in
// ssi_spawns_total and in ssi_jobs{state="running"}; its migrations away
// (one stop-and-copy, one asked post-copy) count in ssi_migrations_total and
// in the frozen, total and image-bytes histograms by the method they used; a
// job that exits counts in ssi_exits_total; etcd's requests are timed. The
// same metrics are on the mTLS API port, GET /v1/metrics, for a node's
// certificate.
func TestMetrics(t *testing.T) {
	c := need(t)
	n1 := c.Nodes[0]
	addr := net.JoinHostPort(n1.IP, "9464")
	c.withAgentArgs(t, "node1", "--metrics-listen="+addr)
	url := "http://" + addr + "/metrics"
	plain := &http.Client{Timeout: 10 * time.Second}
	var before scrape
	eventually(t, 30*time.Second, "node1 serves /metrics", func() (err error) {
		before, err = getScrape(plain, url)
		return err
	})
	if before.value("ssi_etcd_request_duration_seconds_count") == 0 {
		t.Errorf("no etcd request timed after the agent's start:\n%s", strings.Join(before, "\n"))
	}

	a := c.detach(t, "--node", "node1", "--", "sleep", "600")
	b := c.detach(t, "--node", "node1", "--", "sleep", "600")
	defer c.kill(t, a, b)
	var mid scrape
	eventually(t, 15*time.Second, "the two jobs count as spawned and running on node1", func() (err error) {
		if mid, err = getScrape(plain, url); err != nil {
			return err
		}
		if d := mid.value("ssi_spawns_total") - before.value("ssi_spawns_total"); d != 2 {
			return fmt.Errorf("ssi_spawns_total moved by %g, want 2", d)
		}
		if r := mid.value("ssi_jobs", `state="running"`); r < 2 {
			return fmt.Errorf(`ssi_jobs{state="running"} = %g, want at least 2`, r)
		}
		return nil
	})

	stA := c.migrate(t, a, "node2")
	var stB api.MigrateStats
	if err := json.Unmarshal([]byte(c.ok(t, "migrate", "--postcopy", "-o", "json", strconv.FormatUint(b, 10), "node3")), &stB); err != nil {
		t.Fatal(err)
	}
	method := func(st api.MigrateStats) string {
		if st.PostCopy {
			return `method="post-copy"`
		}
		return `method="stop-and-copy"`
	}
	want := map[string]float64{}
	want[method(stA)]++
	want[method(stB)]++

	ended := c.detach(t, "--node", "node1", "--", "sh", "-c", "exit 3")
	var after scrape
	eventually(t, 15*time.Second, "node1's metrics count the migrations and the exit", func() (err error) {
		if after, err = getScrape(plain, url); err != nil {
			return err
		}
		for m, n := range want {
			for _, name := range []string{"ssi_migrations_total", "ssi_migration_frozen_seconds_count", "ssi_migration_duration_seconds_count", "ssi_migration_image_bytes_count"} {
				labels := []string{m}
				if name == "ssi_migrations_total" {
					labels = append(labels, `outcome="succeeded"`)
				}
				if d := after.value(name, labels...) - before.value(name, labels...); d != n {
					return fmt.Errorf("%s{%s} moved by %g, want %g", name, strings.Join(labels, ","), d, n)
				}
			}
		}
		if d := after.value("ssi_exits_total", `state="exited"`) - before.value("ssi_exits_total", `state="exited"`); d != 1 {
			return fmt.Errorf(`ssi_exits_total{state="exited"} moved by %g, want 1 (gpid %d)`, d, ended)
		}
		return nil
	})
	if d := after.value("ssi_migration_image_bytes_sum") - before.value("ssi_migration_image_bytes_sum"); d != float64(stA.ImageBytes+stB.ImageBytes) {
		t.Errorf("ssi_migration_image_bytes_sum moved by %g, want %d (the stats' image bytes)", d, stA.ImageBytes+stB.ImageBytes)
	}
	if after.value("ssi_etcd_request_duration_seconds_count") <= before.value("ssi_etcd_request_duration_seconds_count") {
		t.Error("ssi_etcd_request_duration_seconds_count did not move")
	}
	if after.value("process_resident_memory_bytes") == 0 {
		t.Error("no process_resident_memory_bytes")
	}
	t.Logf("node1: %g spawns, migrations %v, RSS %.1f MiB", after.value("ssi_spawns_total"), want, after.value("process_resident_memory_bytes")/(1<<20))

	// The API port: GET /v1/metrics over mutual TLS, for a node's certificate.
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c.clientTLS(t)}}
	viaAPI, err := getScrape(tlsClient, "https://"+n1.API()+"/v1/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if viaAPI.value("ssi_spawns_total") < after.value("ssi_spawns_total") {
		t.Errorf("GET /v1/metrics: ssi_spawns_total %g, want at least %g", viaAPI.value("ssi_spawns_total"), after.value("ssi_spawns_total"))
	}
}
