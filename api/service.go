package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/ssi-cluster/ssi/pidtable"
)

// ApplyRequest creates or updates a service (ssi apply).
type ApplyRequest struct {
	Spec pidtable.ServiceSpec `json:"spec"`
	// Source is the unit file's name, for display.
	Source string `json:"source,omitempty"`
	// Now replaces every replica at once on a change (ssi apply --now)
	// instead of one at a time.
	Now bool `json:"now,omitempty"`
}

// ApplyResponse says what an apply did: "created", "updated" or "unchanged".
type ApplyResponse struct {
	Name       string `json:"name"`
	Action     string `json:"action"`
	Generation int64  `json:"generation"`
	// Rolling: the change replaces the replicas (RunHash changed).
	Rolling bool `json:"rolling,omitempty"`
}

// ServiceInfo is one row of `ssi services`: the service and its controller's
// status (zero until the controller saw it).
type ServiceInfo struct {
	Service pidtable.Service       `json:"service"`
	Status  pidtable.ServiceStatus `json:"status"`
	// Replicas (ssi service status only) are the replicas' records, ended
	// ones included; Events the service's recent events.
	Replicas []ProcInfo       `json:"replicas,omitempty"`
	Events   []pidtable.Event `json:"events,omitempty"`
}

// ScaleRequest sets a service's replicas (ssi service scale).
type ScaleRequest struct {
	Replicas int `json:"replicas"`
}

// Apply creates or updates the service name.
func (c *Client) Apply(ctx context.Context, name string, r ApplyRequest) (ApplyResponse, error) {
	var out ApplyResponse
	return out, c.do(ctx, http.MethodPut, "/v1/services/"+url.PathEscape(name), r, &out)
}

// Services lists the services the caller may see.
func (c *Client) Services(ctx context.Context) ([]ServiceInfo, error) {
	var out []ServiceInfo
	return out, c.do(ctx, http.MethodGet, "/v1/services", nil, &out)
}

// Service returns a service with its replicas and recent events.
func (c *Client) Service(ctx context.Context, name string) (ServiceInfo, error) {
	var out ServiceInfo
	return out, c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(name), nil, &out)
}

// Scale sets a service's replicas.
func (c *Client) Scale(ctx context.Context, name string, replicas int) (ApplyResponse, error) {
	var out ApplyResponse
	return out, c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/services/%s/scale", url.PathEscape(name)), ScaleRequest{Replicas: replicas}, &out)
}

// RemoveService asks for a service to be removed: the controller stops its
// replicas, then deletes it.
func (c *Client) RemoveService(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(name), nil, nil)
}
