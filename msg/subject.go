package msg

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadSubject is wrapped by the errors of subjects and names users give.
var ErrBadSubject = errors.New("msg: bad subject")

// UserToken is the user's name as one subject token: pki user names may hold
// '.', which NATS reads as a token separator, so it becomes '~' (which user
// names cannot hold, so the mapping is one-to-one).
func UserToken(user string) string { return strings.ReplaceAll(user, ".", "~") }

// Namespace is the prefix of a user's subjects: u.<user>.
func Namespace(user string) string { return "u." + UserToken(user) + "." }

// InboxPrefix is the prefix of a user's reply subjects (nats.go's
// CustomInboxPrefix): replies to a user's requests can be read by that user
// alone.
func InboxPrefix(user string) string { return "_INBOX." + UserToken(user) }

// APIPrefix is the prefix of the requests a user sends the agents (Service):
// the user is known from the subject, which only they may publish to.
func APIPrefix(user string) string { return apiRoot + UserToken(user) + "." }

const apiRoot = "ssi.api."

// Subject turns a subject a user gives into the full subject: relative
// subjects are put under the user's namespace (orders -> u.alice.orders); a
// subject starting with '/' is taken as it is, without the '/' (/u.bob.x, for
// a subject an admin granted or an admin's own use). wild says whether '*'
// and '>' are allowed (subscriptions) or not (publications).
func Subject(user, s string, wild bool) (string, error) {
	abs, isAbs := strings.CutPrefix(s, "/")
	full := abs
	if !isAbs {
		full = Namespace(user) + s
	}
	if s == "" || abs == "" {
		return "", fmt.Errorf("%w: empty subject; give one like orders or orders.eu", ErrBadSubject)
	}
	for i, tok := range strings.Split(abs, ".") {
		switch {
		case tok == "":
			return "", fmt.Errorf("%w: %q has an empty token (two dots, or a dot at an end)", ErrBadSubject, s)
		case strings.ContainsAny(tok, " \t\r\n"):
			return "", fmt.Errorf("%w: %q holds white space", ErrBadSubject, s)
		case tok == "*" || tok == ">":
			if !wild {
				return "", fmt.Errorf("%w: %q holds the wildcard %q: a message is published to one subject, wildcards are for subscriptions", ErrBadSubject, s, tok)
			}
			if tok == ">" && i != len(strings.Split(abs, "."))-1 {
				return "", fmt.Errorf("%w: %q: '>' must be the last token", ErrBadSubject, s)
			}
		case strings.ContainsAny(tok, "*>"):
			return "", fmt.Errorf("%w: %q: '*' and '>' are whole tokens (orders.*), not parts of one", ErrBadSubject, s)
		}
	}
	return full, nil
}

// Relative is the inverse of Subject for display: a subject in user's
// namespace without its prefix, others with a leading '/'.
func Relative(user, full string) string {
	if r, ok := strings.CutPrefix(full, Namespace(user)); ok {
		return r
	}
	return "/" + full
}

// CheckTopic checks a durable topic's name: 1-64 letters, digits, '_' and
// '-', starting with a letter or digit.
func CheckTopic(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%w: topic %q: want 1-64 letters, digits, '_' or '-'", ErrBadSubject, name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '_' || r == '-'))
		if !ok {
			return fmt.Errorf("%w: topic %q: want 1-64 letters, digits, '_' or '-', starting with a letter or digit", ErrBadSubject, name)
		}
	}
	return nil
}

// StreamName is the JetStream stream of user's topic: NAME@USER, the owner
// in the name, so the agents serve each user their own streams only.
func StreamName(user, topic string) string { return topic + "@" + UserToken(user) }

// TopicOf splits a stream name into topic and owner token; ok is false for a
// stream not made by ssi.
func TopicOf(stream string) (topic, userTok string, ok bool) {
	i := strings.LastIndexByte(stream, '@')
	if i <= 0 {
		return "", "", false
	}
	return stream[:i], stream[i+1:], true
}

// TopicSubjects are the subjects a topic stores: u.<user>.NAME and below.
func TopicSubjects(user, topic string) []string {
	p := Namespace(user) + topic
	return []string{p, p + ".>"}
}

// DeliverSubject is where a durable subscription's messages are delivered:
// under the user's inbox, which only they may read.
func DeliverSubject(user, topic, durable string) string {
	return InboxPrefix(user) + ".d." + topic + "." + durable
}
