package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// psBody is what an agent sends for n records like hack/benchscale's.
func psBody(b *testing.B, n int) []byte {
	now := time.Now().UTC()
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range n {
		p := ProcInfo{Proc: pidtable.Proc{GPID: uint64(10_000_000 + i), Node: fmt.Sprintf("fake%d", i%1000), Epoch: 1, State: pidtable.Running,
			PID: 1000 + i%30000, InitPID: 999 + i%30000, User: "root", Argv: []string{"sleep", "3600"}, Workdir: "/",
			Created: now, Started: now, Arrived: now}}
		if i%2 == 0 {
			p.NodeReady, p.Stats = true, &pidtable.ProcStats{CPU: 1.5, RSS: 3 << 20, Stat: "S", Procs: 1}
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		e, err := json.Marshal(p)
		if err != nil {
			b.Fatal(err)
		}
		buf.Write(e)
		buf.WriteByte('\n')
	}
	buf.WriteString("]\n")
	return buf.Bytes()
}

// BenchmarkPSDecode: the client's side of ssi ps -A at 100,000 records,
// splitting and decoding the rows (not the network, not the printing).
func BenchmarkPSDecode(b *testing.B) {
	body := psBody(b, 100_000)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		n := 0
		rows := &rowReader{r: bytes.NewReader(body)}
		for {
			var p ProcInfo
			ok, err := rows.next(&p)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			n++
		}
		if n != 100_000 {
			b.Fatal(n)
		}
	}
}

// BenchmarkPSDecodeJSON is BenchmarkPSDecode with encoding/json's Decoder,
// as PSStream did before psdecode.go.
func BenchmarkPSDecodeJSON(b *testing.B) {
	body := psBody(b, 100_000)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		dec := json.NewDecoder(bytes.NewReader(body))
		if _, err := dec.Token(); err != nil {
			b.Fatal(err)
		}
		n := 0
		for dec.More() {
			var p ProcInfo
			if err := dec.Decode(&p); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 100_000 {
			b.Fatal(n)
		}
	}
}
