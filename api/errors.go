package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ssi-cluster/ssi/errdefs"
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

// Kind is the errdefs kind of e's code (nil for CodeInternal and
// CodeUnauthenticated).
func (e *Error) Kind() error {
	for _, m := range codeKinds {
		if m.code == e.Code {
			return m.kind
		}
	}
	return nil
}

// Unwrap gives e's kind, so that errors.Is(err, errdefs.ErrBusy) holds for an
// error an agent returned with CodeBusy, on either side of the wire.
func (e *Error) Unwrap() error { return e.Kind() }

// codeKinds pairs each code with its errdefs kind.
var codeKinds = [...]struct {
	code Code
	kind error
}{
	{CodeBadRequest, errdefs.ErrInvalid},
	{CodeForbidden, errdefs.ErrForbidden},
	{CodeNotFound, errdefs.ErrNotFound},
	{CodeConflict, errdefs.ErrConflict},
	{CodeBusy, errdefs.ErrBusy},
	{CodeNotReady, errdefs.ErrUnavailable},
}

// FromError converts err to the API's error, by the errdefs kind of its
// chain: the one place where ssi's packages' errors become codes. It returns
// nil when err has no kind (an internal error).
func FromError(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e == err {
		return e
	}
	k := errdefs.KindOf(err)
	if k == nil {
		return nil
	}
	for _, m := range codeKinds {
		if m.kind == k {
			return &Error{Code: m.code, Message: err.Error()}
		}
	}
	return nil
}

// Errorf returns an *Error with code c.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// IsCode reports whether err is an *Error with code c, or an error of the
// errdefs kind that travels as c.
func IsCode(err error, c Code) bool {
	e := FromError(err)
	return e != nil && e.Code == c
}

// ErrUnreachable wraps failures to reach the agent at all.
var ErrUnreachable = errors.New("cannot reach the ssi agent")

// ErrRefused wraps TLS failures: the agent refused the client's certificate, or
// the client refused the agent's.
var ErrRefused = errors.New("TLS handshake with the ssi agent failed")
