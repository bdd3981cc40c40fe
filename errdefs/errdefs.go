// Package errdefs names the kinds of failure that ssi's packages report, so
// that the HTTP edge (package agent) converts them to the API's error codes in
// one place, and a client tells them apart with errors.Is.
//
// A package reports a kind by wrapping one of the sentinels:
//
//	return errdefs.Conflictf("gpid %d is not running on %s", gpid, node)
//	...
//	if errors.Is(err, errdefs.ErrConflict) { ... }
//
// The message is the caller's own, without a prefix: it is what a user reads.
// A cause given with %w stays reachable with errors.Is and errors.As.
//
// The kinds are those of package api's codes; api.Error unwraps to the same
// sentinels, so the test is the same on both sides of the wire.
package errdefs

import (
	"errors"
	"fmt"
)

// The kinds. Each names what the caller should do about it.
var (
	// ErrInvalid: the request is wrong; fix it.
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden: the caller may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: no such job, node, checkpoint or service.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object is not in a state for this.
	ErrConflict = errors.New("conflict")
	// ErrBusy: the job is being moved or checkpointed; retry shortly.
	ErrBusy = errors.New("busy")
	// ErrUnavailable: the node that must act cannot now (NotReady, its
	// lease lost); retry shortly.
	ErrUnavailable = errors.New("unavailable")
)

// kindError is an error of a kind with the caller's message.
type kindError struct {
	kind error
	err  error // the message, and any cause wrapped with %w
}

func (e *kindError) Error() string { return e.err.Error() }

// Unwrap gives the kind and the cause.
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// Kind says which kind e is (see KindOf).
func (e *kindError) Kind() error { return e.kind }

// KindOf returns the kind of err: that of the outermost error in its chain
// that has one (an error of this package's, or any error with a method
// Kind() error, such as api.Error), or nil.
func KindOf(err error) error {
	var k interface{ Kind() error }
	if errors.As(err, &k) {
		return k.Kind()
	}
	return nil
}

// New returns an error of kind with the message of format and args (which
// may wrap a cause with %w).
func New(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// Invalidf returns an ErrInvalid with the message.
func Invalidf(format string, args ...any) error { return New(ErrInvalid, format, args...) }

// Forbiddenf returns an ErrForbidden with the message.
func Forbiddenf(format string, args ...any) error { return New(ErrForbidden, format, args...) }

// NotFoundf returns an ErrNotFound with the message.
func NotFoundf(format string, args ...any) error { return New(ErrNotFound, format, args...) }

// Conflictf returns an ErrConflict with the message.
func Conflictf(format string, args ...any) error { return New(ErrConflict, format, args...) }

// Busyf returns an ErrBusy with the message.
func Busyf(format string, args ...any) error { return New(ErrBusy, format, args...) }

// Unavailablef returns an ErrUnavailable with the message.
func Unavailablef(format string, args ...any) error { return New(ErrUnavailable, format, args...) }

// Kinds lists every kind, for the edge's mapping and its test.
func Kinds() []error {
	return []error{ErrInvalid, ErrForbidden, ErrNotFound, ErrConflict, ErrBusy, ErrUnavailable}
}
