package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Code classifies an API error.
type Code string

// Error codes and the HTTP statuses they travel with.
const (
	CodeBadRequest      Code = "bad_request"     // 400: the request is wrong; fix it
	CodeUnauthenticated Code = "unauthenticated" // 401: no valid client certificate
	CodeForbidden       Code = "forbidden"       // 403: the caller may not do this
	CodeNotFound        Code = "not_found"       // 404: unknown gpid or node
	CodeConflict        Code = "conflict"        // 409: the job is not in a state for this
	CodeBusy            Code = "busy"            // 409: the job is being moved or checkpointed; retry shortly
	CodeNotReady        Code = "not_ready"       // 503: the node that must act is NotReady
	CodeInternal        Code = "internal"        // 500
)

// Status returns the HTTP status for c.
func (c Code) Status() int {
	switch c {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnauthenticated:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict, CodeBusy:
		return http.StatusConflict
	case CodeNotReady:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Error is an error returned by an agent.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with code c.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// IsCode reports whether err is an *Error with code c.
func IsCode(err error, c Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == c
}

// ErrUnreachable wraps failures to reach the agent at all.
var ErrUnreachable = errors.New("cannot reach the ssi agent")

// ErrRefused wraps TLS failures: the agent refused the client's certificate, or
// the client refused the agent's.
var ErrRefused = errors.New("TLS handshake with the ssi agent failed")
