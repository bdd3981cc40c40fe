package agent

import (
	"slices"
	"testing"
)

func TestMissingCPUFlags(t *testing.T) {
	src := []string{"aes", "avx", "avx2", "avx512f", "sse4_2"}
	dst := []string{"aes", "avx", "avx2", "sha_ni", "sse4_2"}
	if got := missingCPUFlags(src, dst); !slices.Equal(got, []string{"avx512f"}) {
		t.Fatalf("missing = %v, want [avx512f]", got)
	}
	if got := missingCPUFlags(dst[:3], src); len(got) != 0 {
		t.Fatalf("subset: missing = %v", got)
	}
}

func TestCPUFlagsOfThisMachine(t *testing.T) {
	flags, err := cpuFlags()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(flags) {
		t.Fatalf("flags not sorted: %v", flags)
	}
	if got := missingCPUFlags(flags, flags); len(got) != 0 {
		t.Fatalf("a CPU lacks its own flags: %v", got)
	}
}
