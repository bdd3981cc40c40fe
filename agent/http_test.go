package agent

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/supervisor"
)

func TestDecodeLimits(t *testing.T) {
	cases := map[string]string{
		"malformed":     `{"argv":`,
		"unknown field": `{"argv":["x"],"root":true}`,
		"two objects":   `{"argv":["x"]}{"argv":["y"]}`,
		"oversized":     `{"argv":["` + strings.Repeat("a", maxRequestBody) + `"]}`,
		"wrong type":    `{"argv":"x"}`,
	}
	for name, body := range cases {
		var req api.RunRequest
		err := decode(httptest.NewRequest("POST", "/v1/procs", strings.NewReader(body)), &req)
		if !api.IsCode(err, api.CodeBadRequest) {
			t.Errorf("%s: %v, want a bad request", name, err)
		}
	}
	// A large body followed by whitespace (curl, editors) is fine.
	var req api.RunRequest
	ok := `{"argv":["echo","` + strings.Repeat("a", 200<<10) + `"]}` + "\n\n"
	if err := decode(httptest.NewRequest("POST", "/v1/procs", strings.NewReader(ok)), &req); err != nil {
		t.Fatalf("large body with a trailing newline: %v", err)
	}
}

// FuzzRunRequest feeds arbitrary bodies to the run endpoint's decoder and
// validation: whatever passes must be within the limits.
func FuzzRunRequest(f *testing.F) {
	f.Add([]byte(`{"argv":["sleep","1"],"env":["A=B"],"cpus":0.5,"memory":67108864,"constraints":{"a":"b"}}`))
	f.Add([]byte(`{"argv":[""]}`))
	f.Add([]byte(`{"argv":["x"],"user":"root","node":"n1","workdir":"/","workdir_explicit":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req api.RunRequest
		if err := decode(httptest.NewRequest("POST", "/v1/procs", strings.NewReader(string(b))), &req); err != nil {
			if !api.IsCode(err, api.CodeBadRequest) {
				t.Fatalf("decode error %v is not a bad request", err)
			}
			return
		}
		if err := supervisor.ValidateRun(req); err != nil {
			if !api.IsCode(err, api.CodeBadRequest) {
				t.Fatalf("validation error %v is not a bad request", err)
			}
			return
		}
		size := 0
		for _, s := range append(req.Argv, req.Env...) {
			size += len(s) + 1
			if strings.IndexByte(s, 0) >= 0 {
				t.Fatal("NUL accepted")
			}
		}
		if len(req.Argv) == 0 || req.Argv[0] == "" || len(req.Argv)+len(req.Env) > supervisor.MaxArgs || size > supervisor.MaxArgBytes || req.CPUs < 0 || req.Memory < 0 {
			t.Fatalf("accepted %+v", req)
		}
	})
}

// TestLogPanics: a handler's panic is logged at error level with its stack
// and the request aborted (http.ErrAbortHandler), not swallowed.
func TestLogPanics(t *testing.T) {
	var buf bytes.Buffer
	a := &Agent{log: slog.New(slog.NewTextHandler(&buf, nil))}
	h := a.logPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		var stats *api.MigrateStats
		_ = stats.PostCopy // nil dereference
	}))
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler", v)
		}
		if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "nil pointer") || !strings.Contains(out, "TestLogPanics") {
			t.Fatalf("log: %s", out)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/procs/1/migrate", nil))
}
