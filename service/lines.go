package service

// ScanLines returns the line of each option of a unit file, in the order
// go-systemd's unit.DeserializeOptions returns them, or a *ParseError (File
// unset) for the first line that is not a comment, a section header or a
// NAME=VALUE option. Other unit kinds (package timer) share it.
func ScanLines(data []byte) ([]int, error) {
	lines, bad := scanLines(data)
	if bad != nil {
		return nil, bad
	}
	return lines, nil
}
