// Package jsonbytes holds what the hand-written JSON scanners of the hot
// paths (api's ps decoder, pidtable's record head scan) share.
package jsonbytes

// Plain is true for the bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash.
var Plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
