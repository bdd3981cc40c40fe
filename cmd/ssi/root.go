package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
)

// version is the ssi version, set with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitLost    = 125
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error // printed when non-nil
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// env is what commands need from the process: streams and the environment,
// injected so tests can run commands in-process.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	endpoint       string // --endpoint
}

func run(ctx context.Context, args []string) int {
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	root := newRoot(e)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(e.stderr, "ssi: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(e.stderr, "ssi: %v\n", err)
	return exitFailure
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "ssi",
		Short: "ssi makes a cluster of Linux machines feel like one computer",
		Long: `ssi runs programs anywhere in a cluster and shows them as one process table.

  ssi run -- CMD       run CMD on some node, attached like a local command
  ssi ps -A            every process on every node
  ssi nodes            the nodes and their load

The CLI talks to any node agent: --endpoint, else $SSI_ENDPOINT, else the
"endpoint" of the config file ($SSI_CONFIG, ~/.config/ssi/config.json or
/etc/ssi/config.json, which 'make up' writes for the local cluster).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().StringVar(&e.endpoint, "endpoint", "", "agent API address (http://HOST:PORT)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.AddCommand(runCmd(e), psCmd(e), nodesCmd(e), killCmd(e), logsCmd(e), waitCmd(e), migrateCmd(e), balanceCmd(e), eventsCmd(e), agentCmd(e), localCmd(e), simCmd(e))
	return root
}

// configFile is the CLI's config.
type configFile struct {
	Endpoint string `json:"endpoint"`
}

// resolveEndpoint finds the agent endpoint and says where it came from.
func (e *env) resolveEndpoint() (endpoint, source string, err error) {
	if e.endpoint != "" {
		return e.endpoint, "--endpoint", nil
	}
	if v := e.getenv("SSI_ENDPOINT"); v != "" {
		return v, "SSI_ENDPOINT", nil
	}
	var paths []string
	if p := e.getenv("SSI_CONFIG"); p != "" {
		paths = append(paths, p)
	} else {
		if home := e.getenv("HOME"); home != "" {
			paths = append(paths, filepath.Join(home, ".config", "ssi", "config.json"))
		}
		paths = append(paths, "/etc/ssi/config.json")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("read config %s: %w", p, err)
		}
		var c configFile
		if err := json.Unmarshal(b, &c); err != nil || c.Endpoint == "" {
			return "", "", fmt.Errorf("config %s: want {\"endpoint\": \"http://HOST:PORT\"} (%v)", p, err)
		}
		return c.Endpoint, p, nil
	}
	return "", "", fmt.Errorf("no cluster configured: no --endpoint, SSI_ENDPOINT or config file (%s); start a local cluster with 'make up'", strings.Join(paths, ", "))
}

// client returns an API client acting as the calling user.
func (e *env) client() (*api.Client, string, error) {
	ep, src, err := e.resolveEndpoint()
	if err != nil {
		return nil, "", err
	}
	u, err := user.Current()
	if err != nil {
		return nil, "", fmt.Errorf("who am I: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	c, err := api.NewClient(ep, u.Username, uid)
	if err != nil {
		return nil, "", fmt.Errorf("%w (from %s)", err, src)
	}
	return c, src, nil
}

// explain rewrites errors for humans: an unreachable agent says where the
// endpoint came from and how to start a cluster.
func explain(err error, src string) error {
	if errors.Is(err, api.ErrUnreachable) {
		return fmt.Errorf("%w (endpoint from %s); is the cluster up? start a local one with 'make up', or point --endpoint/SSI_ENDPOINT at a running agent", err, src)
	}
	return err
}
