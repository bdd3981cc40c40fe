package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/internal/testenv"
)

func TestConfigValidate(t *testing.T) {
	shimExe := filepath.Join(t.TempDir(), "ssi-shim")
	if err := os.WriteFile(shimExe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := func() Config {
		return Config{Name: "node1", Listen: "10.0.0.1:7070", DataDir: "/tmp/x", ShimExe: shimExe}
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.EtcdClientURL != "https://10.0.0.1:2379" || c.Advertise != "10.0.0.1:7070" || c.CgroupParent != "/ssi" || c.LeaseTTL != 5 {
		t.Fatalf("defaults not filled: %+v", c)
	}
	cases := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Name = "Node_1" }, `--name "Node_1"`},
		{func(c *Config) { c.Listen = "nope" }, `--listen "nope"`},
		{func(c *Config) { c.Listen = "0.0.0.0:7070" }, `--advertise "0.0.0.0:7070"`},
		{func(c *Config) { c.DataDir = "" }, "--data-dir is required"},
		{func(c *Config) { c.CPUs = -2 }, "--cpus -2"},
		{func(c *Config) { c.Placement = "best" }, "--placement"},
		{func(c *Config) { c.CgroupParent = "ssi" }, `--cgroup-parent "ssi"`},
		{func(c *Config) { c.ShimExe = "/nonexistent/ssi-shim" }, `--shim-binary "/nonexistent/ssi-shim"`},
		{func(c *Config) { c.Join = "10.0.0.2:7070" }, "--join and --token go together"},
		{func(c *Config) { c.Join, c.Token = "nope", "t" }, `--join "nope"`},
		{func(c *Config) { c.Join, c.Token, c.Insecure = "10.0.0.2:7070", "t", true }, "cannot be used with --insecure"},
		{func(c *Config) { c.CPUSet = "99" }, `--cpuset "99": isolate: bad CPU list "99": CPU 99 is not online`},
		{func(c *Config) { c.CPUSet = "zero" }, `--cpuset "zero"`},
		{func(c *Config) { c.CPUSet = "1-0" }, `--cpuset "1-0"`},
		{func(c *Config) { c.MetricsListen = "9464" }, `--metrics-listen "9464": want HOST:PORT`},
	}
	for _, tc := range cases {
		c := good()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error mentioning %q", err, tc.want)
		}
	}
}

func TestConfigCPUSetCapacity(t *testing.T) {
	shimExe := filepath.Join(t.TempDir(), "ssi-shim")
	if err := os.WriteFile(shimExe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := Config{Name: "node1", Listen: "10.0.0.1:7070", DataDir: "/tmp/x", ShimExe: shimExe, CPUSet: "0,0"}
	if err := c.Validate(); err != nil {
		testenv.Skip(t, "CPU 0 not usable here: %v", err)
	}
	if c.CPUSet != "0" || c.CPUs != 1 {
		t.Errorf("--cpuset 0,0: cpuset %q, cpus %g; want \"0\" and 1", c.CPUSet, c.CPUs)
	}
	c = Config{Name: "node1", Listen: "10.0.0.1:7070", DataDir: "/tmp/x", ShimExe: shimExe, CPUSet: "0", CPUs: 4}
	if err := c.Validate(); err != nil || c.CPUs != 4 {
		t.Errorf("--cpuset 0 --cpus 4: cpus %g, err %v; want --cpus kept", c.CPUs, err)
	}
}
