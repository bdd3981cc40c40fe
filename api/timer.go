package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// TimerApplyRequest creates or updates a timer (ssi apply NAME.timer): the
// timer unit and the service unit it starts, parsed by the CLI.
type TimerApplyRequest struct {
	Spec    pidtable.TimerSpec   `json:"spec"`
	Service pidtable.ServiceSpec `json:"service"`
	// Source holds the unit files' contents by name, for display.
	Source map[string]string `json:"source,omitempty"`
}

// TimerInfo is one row of `ssi timers` (systemctl list-timers), and with
// Runs `ssi timer status`.
type TimerInfo struct {
	Timer pidtable.Timer `json:"timer"`
	// Next is the next tick's due time (zero: none); Last the last run's.
	Next time.Time `json:"next,omitzero"`
	Last *TimerRun `json:"last,omitempty"`
	// Runs (ssi timer status only) are the newest ticks, newest first.
	Runs []TimerRun `json:"runs,omitempty"`
}

// TimerRun is a tick and, when it ran, its run's record.
type TimerRun struct {
	Tick pidtable.Tick `json:"tick"`
	// State, Ended and ExitCode are the run's (from the process table or
	// its history); State is "" when the run has no record.
	State    pidtable.State `json:"state,omitempty"`
	Ended    time.Time      `json:"ended,omitzero"`
	ExitCode *int           `json:"exit_code,omitempty"`
}

// ApplyTimer creates or updates the timer name.
func (c *Client) ApplyTimer(ctx context.Context, name string, r TimerApplyRequest) (ApplyResponse, error) {
	var out ApplyResponse
	return out, c.do(ctx, http.MethodPut, "/v1/timers/"+url.PathEscape(name), r, &out)
}

// Timers lists the timers the caller may see.
func (c *Client) Timers(ctx context.Context) ([]TimerInfo, error) {
	var out []TimerInfo
	return out, c.do(ctx, http.MethodGet, "/v1/timers", nil, &out)
}

// Timer returns a timer with its newest ticks.
func (c *Client) Timer(ctx context.Context, name string) (TimerInfo, error) {
	var out TimerInfo
	return out, c.do(ctx, http.MethodGet, "/v1/timers/"+url.PathEscape(name), nil, &out)
}

// RunTimer fires the timer now (ssi timer run): it returns the tick claimed;
// the controller starts it.
func (c *Client) RunTimer(ctx context.Context, name string) (pidtable.Tick, error) {
	var out pidtable.Tick
	return out, c.do(ctx, http.MethodPost, "/v1/timers/"+url.PathEscape(name)+"/run", nil, &out)
}

// RemoveTimer removes the timer (its runs that run go on).
func (c *Client) RemoveTimer(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/timers/"+url.PathEscape(name), nil, nil)
}
