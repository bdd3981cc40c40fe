package pidtable

import (
	"strconv"

	"github.com/ssi-cluster/ssi/internal/jsonbytes"
)

// validHead is json.Valid and decodeHead in one pass over a record, for
// ListRaw (ssi ps): at 100,000 records the two took a third of the agent's
// time, json.Valid's per-byte state machine most of it. It checks the
// record's JSON as json.Valid does (grammar only: strings are not checked
// for UTF-8, as json.Valid does not) and reads the head as scanHead does.
// ok is false when it cannot tell (not valid JSON, not an object, or a head
// scanHead would leave to json.Unmarshal): the caller then asks json.Valid
// and decodeHead.
func validHead(b []byte) (h Head, ok bool) {
	v := validator{b: b}
	v.ws()
	if v.i >= len(b) || b[v.i] != '{' {
		return h, false
	}
	v.i++
	v.ws()
	if v.i < len(b) && b[v.i] == '}' {
		v.i++
	} else {
		for {
			v.ws()
			key, plain := v.str()
			if key == nil || !v.colon() {
				return h, false
			}
			v.ws()
			start := v.i
			if !v.value(0) {
				return h, false
			}
			if !plain {
				return h, false // an escape could spell a head's key
			}
			if len(key) <= 5 && !v.head(&h, key, b[start:v.i]) {
				return h, false
			}
			v.ws()
			if v.i < len(b) && b[v.i] == '}' {
				v.i++
				break
			}
			if v.i >= len(b) || b[v.i] != ',' {
				return h, false
			}
			v.i++
		}
	}
	v.ws()
	return h, v.i == len(b)
}

// head sets h's field for key (a key of the record's top level, plain
// ASCII) from its value val; false for what scanHead would not take.
func (v *validator) head(h *Head, key, val []byte) bool {
	var dst *string
	switch string(key) {
	case "gpid":
		n, err := strconv.ParseUint(string(val), 10, 64)
		h.GPID = n
		return err == nil
	case "node":
		dst = &h.Node
	case "user":
		dst = &h.User
	case "state":
		var s string
		ok := headString(val, &s)
		h.State = State(s)
		return ok
	default:
		return !foldsToField(key) // encoding/json matches keys without case
	}
	return headString(val, dst)
}

// headString reads a head's string value: plain ASCII, or null ("").
func headString(val []byte, dst *string) bool {
	if string(val) == "null" {
		*dst = ""
		return true
	}
	s, _, plain := scanString(val, 0)
	*dst = string(s)
	return plain
}

// validator checks JSON values as json.Valid does.
type validator struct {
	b []byte
	i int
}

func (v *validator) ws() { v.i = skipWS(v.b, v.i) }

func (v *validator) colon() bool {
	v.ws()
	if v.i < len(v.b) && v.b[v.i] == ':' {
		v.i++
		return true
	}
	return false
}

// maxDepth bounds value's recursion; deeper values are left to json.Valid.
const maxDepth = 100

// value checks the value at b[i] and moves past it.
func (v *validator) value(depth int) bool {
	if v.i >= len(v.b) || depth > maxDepth {
		return false
	}
	switch c := v.b[v.i]; {
	case c == '"':
		s, _ := v.str()
		return s != nil
	case c == '{' || c == '[':
		return v.container(depth)
	case c == '-' || c >= '0' && c <= '9':
		return v.number()
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(v.b)-v.i >= len(lit) && string(v.b[v.i:v.i+len(lit)]) == lit {
			v.i += len(lit)
			return true
		}
	}
	return false
}

// container checks an object or an array.
func (v *validator) container(depth int) bool {
	obj := v.b[v.i] == '{'
	end := byte(']')
	if obj {
		end = '}'
	}
	v.i++
	v.ws()
	if v.i < len(v.b) && v.b[v.i] == end {
		v.i++
		return true
	}
	for {
		v.ws()
		if obj {
			if s, _ := v.str(); s == nil || !v.colon() {
				return false
			}
			v.ws()
		}
		if !v.value(depth + 1) {
			return false
		}
		v.ws()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case end:
			v.i++
			return true
		case ',':
			v.i++
		default:
			return false
		}
	}
}

// str checks a string and returns its contents (nil: not a valid string;
// empty, not nil, for ""), and whether it is plain ASCII without escapes.
func (v *validator) str() ([]byte, bool) {
	b := v.b
	if v.i >= len(b) || b[v.i] != '"' {
		return nil, false
	}
	plain := true
	for j := v.i + 1; j < len(b); j++ {
		for j < len(b) && jsonbytes.Plain[b[j]] { // most of a record's bytes
			j++
		}
		if j == len(b) {
			break
		}
		switch c := b[j]; {
		case c == '"':
			s := b[v.i+1 : j : j]
			v.i = j + 1
			return s, plain
		case c < 0x20:
			return nil, false
		case c >= 0x80:
			plain = false
		case c == '\\':
			plain = false
			if j+1 >= len(b) {
				return nil, false
			}
			j++
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					return nil, false
				}
				for _, x := range b[j+1 : j+5] {
					if !(x >= '0' && x <= '9' || x >= 'a' && x <= 'f' || x >= 'A' && x <= 'F') {
						return nil, false
					}
				}
				j += 4
			default:
				return nil, false
			}
		}
	}
	return nil, false
}

// number checks a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (v *validator) number() bool {
	b, j := v.b, v.i
	digits := func() bool {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j > k
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case !digits():
		return false
	}
	if j < len(b) && b[j] == '.' {
		j++
		if !digits() {
			return false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if !digits() {
			return false
		}
	}
	v.i = j
	return true
}
