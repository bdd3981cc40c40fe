//go:build !failpoints

package failpoint

// Hit marks a failpoint; without the failpoints build tag it does nothing.
func Hit(string) error { return nil }

// Enabled reports whether this is a failpoint build.
const Enabled = false
