package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// tokenPrefix starts every join token (as k3s's do).
const tokenPrefix = "K10"

// Token is a join token: K10<ca-hash>::<id>.<secret>. The cluster stores only
// the hash of the secret (and the expiry); the CA hash lets a joiner pin the
// CA before it trusts the cluster.
type Token struct {
	CAHash string // hex SHA-256 of the CA certificate
	ID     string // 6 lower-case hex digits; names the token in etcd
	Secret string // 32 lower-case hex digits
}

// NewToken returns a fresh token for the CA with the given hash.
func NewToken(caHash string) (Token, error) {
	var b [19]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Token{}, fmt.Errorf("pki: token: %w", err)
	}
	return Token{CAHash: caHash, ID: hex.EncodeToString(b[:3]), Secret: hex.EncodeToString(b[3:])}, nil
}

func (t Token) String() string { return tokenPrefix + t.CAHash + "::" + t.ID + "." + t.Secret }

// SecretHash is what the cluster stores for the token: hex SHA-256 of the secret.
func (t Token) SecretHash() string {
	h := sha256.Sum256([]byte(t.Secret))
	return hex.EncodeToString(h[:])
}

// Matches reports, in constant time, whether the token's secret has hash h.
func (t Token) Matches(h string) bool {
	return subtle.ConstantTimeCompare([]byte(t.SecretHash()), []byte(h)) == 1
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// ParseToken parses a join token.
func ParseToken(s string) (Token, error) {
	bad := func(why string) (Token, error) {
		return Token{}, fmt.Errorf("pki: malformed join token (%s): want K10<64 hex>::<6 hex>.<32 hex> as printed by 'ssi token create'", why)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok {
		return bad("no K10 prefix")
	}
	hash, cred, ok := strings.Cut(rest, "::")
	if !ok || !isHex(hash, 64) {
		return bad("CA hash")
	}
	id, secret, ok := strings.Cut(cred, ".")
	if !ok || !isHex(id, 6) || !isHex(secret, 32) {
		return bad("id or secret")
	}
	return Token{CAHash: hash, ID: id, Secret: secret}, nil
}

// CheckTokenID checks a join token's id (as 'ssi token list' shows it).
func CheckTokenID(id string) error {
	if !isHex(id, 6) {
		return fmt.Errorf("pki: token id %q: want 6 lower-case hex digits (ssi token list)", id)
	}
	return nil
}
