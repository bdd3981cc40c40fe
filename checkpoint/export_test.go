package checkpoint

// LastLines exposes lastLines to the external test package.
var LastLines = lastLines
