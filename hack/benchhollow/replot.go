package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// replot rebuilds the figures of earlier runs from their -json result files,
// in order, so that one plot shows configurations measured in several runs.
// A configuration without a measured ssi run (cut short) is left out; a
// figure a configuration did not reach is left out of its panel: the
// window's when there are no balancer rounds, etcd's db size when it is 0.
func replot(paths []string) ([]*configResult, error) {
	var out []*configResult
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var res benchkit.Result
		if err := json.Unmarshal(b, &res); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		bySec := map[string]*configResult{}
		for _, s := range res.Series {
			c := bySec[s.Section]
			if c == nil {
				c = &configResult{}
				if _, err := fmt.Sscanf(s.Section, "%d hollow nodes, %d records", &c.config.nodes, &c.config.records); err != nil {
					return nil, fmt.Errorf("%s: section %q: %w", p, s.Section, err)
				}
				bySec[s.Section] = c
				out = append(out, c)
			}
			one := 0.0
			if len(s.Values) > 0 {
				one = s.Values[0]
			}
			switch s.Name {
			case "ssi run":
				c.run = s.Values
			case "kill to NotReady":
				c.notice = s.Values
			case "lease TTL left at the kill":
				c.ttlLeft = s.Values
			case "lease expiry to NotReady":
				c.lag = s.Values
			case "balancer round":
				c.rounds = s.Values
				c.windowed = len(s.Values) > 0
			case "leader CPU":
				c.leaderCPU = one
			case "node1 CPU":
				c.node1CPU = one
			case "hollow nodes CPU":
				c.selfCPU = one
			case "etcd db size":
				c.dbSize, c.dbMeasured = one, one > 0
			case "hollow leases lost":
				c.leaseLosses = int(one)
			}
		}
	}
	kept := out[:0]
	for _, c := range out {
		if len(c.run) > 0 {
			kept = append(kept, c)
		}
	}
	// By records, then nodes: the plot reads as the table grows.
	slices.SortStableFunc(kept, func(a, b *configResult) int {
		return cmp.Or(cmp.Compare(a.config.records, b.config.records), cmp.Compare(a.config.nodes, b.config.nodes))
	})
	return kept, nil
}
