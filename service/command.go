package service

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SplitCommand splits an ExecStart= value into argv the way systemd does
// (systemd.service(5), "Command lines"), for what ssi supports:
//
//   - words are separated by spaces and tabs; "double" and 'single' quotes
//     group, and may join other characters of the same word;
//   - C escapes are decoded in and out of quotes: \a \b \f \n \r \t \v \\
//     \" \' \s (space) \xHH \NNN (octal) \uXXXX \UXXXXXXXX;
//   - after that, a word that is exactly $NAME is replaced by NAME's value
//     split at whitespace (zero or more words); ${NAME} anywhere in a word is
//     replaced by the value as is; $$ is a literal $; an unset NAME is empty.
//     Variables come from Environment= and EnvironmentFile= only;
//   - the prefix ":" turns the variable substitution off; the other prefixes
//     (@ - + !) are refused.
//
// Specifiers (%i, %n, ...) were expanded by the unit parser before.
func SplitCommand(v string, env []string) ([]string, error) {
	v = strings.TrimLeft(v, " \t")
	expand := true
	for len(v) > 0 && strings.ContainsRune("@-:+!|", rune(v[0])) {
		if v[0] != ':' {
			return nil, fmt.Errorf("the prefix %q is not supported (ssi supports only :)", v[0])
		}
		expand = false
		v = v[1:]
	}
	words, err := splitWords(v)
	if err != nil {
		return nil, err
	}
	if !expand {
		return words, nil
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, val, _ := strings.Cut(kv, "=")
		vars[k] = val
	}
	var out []string
	for _, w := range words {
		if name, ok := strings.CutPrefix(w, "$"); ok && envNameRE.MatchString(name) {
			out = append(out, strings.Fields(vars[name])...)
			continue
		}
		e, err := expandBraces(w, vars)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// expandBraces replaces ${NAME} and $$ in one word.
func expandBraces(w string, vars map[string]string) (string, error) {
	if !strings.Contains(w, "$") {
		return w, nil
	}
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		switch {
		case w[i] != '$':
			b.WriteByte(w[i])
		case strings.HasPrefix(w[i:], "$$"):
			b.WriteByte('$')
			i++
		case strings.HasPrefix(w[i:], "${"):
			end := strings.IndexByte(w[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q: ${ without a closing }", w)
			}
			name := w[i+2 : i+end]
			if !envNameRE.MatchString(name) {
				return "", fmt.Errorf("%q: ${%s} is not a variable name", w, name)
			}
			b.WriteString(vars[name])
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), nil
}

// splitWords splits v at unquoted blanks, removing quotes and decoding C
// escapes (systemd's extract_first_word with UNQUOTE and CUNESCAPE).
func splitWords(v string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			r, n, err := unescape(v[i:])
			if err != nil {
				return nil, err
			}
			cur.WriteString(r)
			i += n - 1
			inWord = true
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// unescape decodes the C escape at the start of s (s[0] == '\\'), returning
// the text and how many bytes of s it took.
func unescape(s string) (string, int, error) {
	if len(s) < 2 {
		return "", 0, errors.New("a backslash at the end")
	}
	simple := map[byte]string{'a': "\a", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t", 'v': "\v", '\\': "\\", '"': "\"", '\'': "'", 's': " ", '$': "$"}
	if r, ok := simple[s[1]]; ok {
		return r, 2, nil
	}
	hex := func(n int) (string, int, error) {
		if len(s) < 2+n {
			return "", 0, fmt.Errorf("escape %q: want %d hex digits", s, n)
		}
		u, err := strconv.ParseUint(s[2:2+n], 16, 32)
		if err != nil || (n > 2 && !utf8.ValidRune(rune(u))) {
			return "", 0, fmt.Errorf("escape %q: want %d hex digits", s[:2+n], n)
		}
		if n == 2 {
			return string([]byte{byte(u)}), 2 + n, nil
		}
		return string(rune(u)), 2 + n, nil
	}
	switch s[1] {
	case 'x':
		return hex(2)
	case 'u':
		return hex(4)
	case 'U':
		return hex(8)
	case '0', '1', '2', '3':
		if len(s) < 4 {
			return "", 0, fmt.Errorf("escape %q: want 3 octal digits", s)
		}
		u, err := strconv.ParseUint(s[1:4], 8, 8)
		if err != nil {
			return "", 0, fmt.Errorf("escape %q: want 3 octal digits", s[:4])
		}
		return string([]byte{byte(u)}), 4, nil
	}
	return "", 0, fmt.Errorf("unknown escape \\%c", s[1])
}
