package hollow

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Handler is the cluster's control API, for tests and benchmarks (plain
// HTTP: serve it on a loopback address only):
//
//	GET  /nodes              the nodes, as JSON ([]NodeInfo)
//	POST /nodes/{name}/kill  Kill: the node stops as in a crash
//	POST /nodes/{name}/stop  Stop: the node ends its jobs and revokes its lease
func (c *Cluster) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, c.Nodes())
	})
	act := func(f func(string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := f(r.PathValue("name")); err != nil {
				code := http.StatusInternalServerError
				if errors.Is(err, ErrUnknownNode) {
					code = http.StatusNotFound
				}
				writeJSON(w, code, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"node": r.PathValue("name")})
		}
	}
	mux.HandleFunc("POST /nodes/{name}/kill", act(c.Kill))
	mux.HandleFunc("POST /nodes/{name}/stop", act(func(name string) error {
		if name == "" {
			return ErrUnknownNode
		}
		return c.Stop(name)
	}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
