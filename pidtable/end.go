package pidtable

import "fmt"

// DescribeEnd says how an ended job ended, for messages ("gpid 7 has already
// exited with status 1").
func (p Proc) DescribeEnd() string {
	switch {
	case p.State == Lost:
		return "been lost: " + p.Error
	case p.State == Checkpointed:
		return fmt.Sprintf("been stopped into checkpoint %s (bring it back with: ssi restore %s)", p.Checkpoint, p.Checkpoint)
	case p.ExitCode == nil:
		return "ended"
	}
	return fmt.Sprintf("exited with status %d", *p.ExitCode)
}
