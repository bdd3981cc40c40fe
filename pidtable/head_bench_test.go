package pidtable

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// BenchmarkListRawRecord: what ListRaw does with each of 100,000 records
// like hack/benchscale's before ssi ps's agent sees it (json.Valid, then
// the head: validHead), without etcd. Before validHead, json.Valid and
// decodeHead, a bit more than twice as long.
func BenchmarkListRawRecord(b *testing.B) {
	now := time.Now().UTC()
	recs := make([][]byte, 100_000)
	for i := range recs {
		p := Proc{GPID: uint64(10_000_000 + i), Node: fmt.Sprintf("fake%d", i%1000), Epoch: 1, State: Running,
			PID: 1000 + i%30000, InitPID: 999 + i%30000, User: "root", Argv: []string{"sleep", "3600"}, Workdir: "/",
			Created: now, Started: now, Arrived: now}
		recs[i], _ = json.Marshal(p)
	}
	b.ResetTimer()
	for range b.N {
		for _, r := range recs {
			if _, ok := validHead(r); !ok {
				b.Fatal("not ok")
			}
		}
	}
}
