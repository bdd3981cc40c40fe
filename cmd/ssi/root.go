package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

// version is the ssi version, set with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitLost    = 125
	// exitCheckpointed: the job did not end but was stopped into a checkpoint
	// (ssi checkpoint without --leave-running).
	exitCheckpointed = 122
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
	stdin          io.Reader // nil: none (tests)
	stdout, stderr io.Writer
	getenv         func(string) string
	endpoint       string // --endpoint
	insecure       bool   // --insecure
}

func run(ctx context.Context, args []string) int {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
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

The CLI talks to any node agent over mutual TLS, as the user named in its
config file: $SSI_CONFIG, else ~/.config/ssi/config.json, else
/etc/ssi/config.json ('make up' writes that one, for an admin). An admin makes
configs with 'ssi user add NAME --out FILE'. --endpoint or $SSI_ENDPOINT
override the config's server.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().StringVar(&e.endpoint, "endpoint", "", "agent API address (HOST:PORT; default: the config file's server)")
	root.PersistentFlags().BoolVar(&e.insecure, "insecure", false, "DEBUGGING ONLY: plain HTTP without authentication, for agents started with --insecure")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.AddCommand(runCmd(e), psCmd(e), nodesCmd(e), killCmd(e), logsCmd(e), waitCmd(e), migrateCmd(e), checkpointCmd(e), checkpointsCmd(e), restoreCmd(e), balanceCmd(e), eventsCmd(e), applyCmd(e), servicesCmd(e), serviceCmd(e), agentCmd(e), localCmd(e), simCmd(e), topCmd(e), fsCmd(e), manCmd(e), userCmd(e), tokenCmd(e), nodeCmd(e))
	root.AddCommand(dashboardCmd(e))                                                             // the web dashboard's login link (dashboard.go)
	root.AddCommand(timersCmd(e), timerCmd(e))                                                   // timers (timer.go)
	root.AddCommand(pubCmd(e), subCmd(e), requestCmd(e), replyCmd(e), topicCmd(e), topicsCmd(e)) // messages (msg.go)
	addCompletions(root, e)
	return root
}

// defaultConfigs are the config files tried when SSI_CONFIG is not set, in order.
func (e *env) defaultConfigs() []string {
	var paths []string
	if home := e.getenv("HOME"); home != "" {
		paths = append(paths, filepath.Join(home, ".config", "ssi", "config.json"))
	}
	return append(paths, "/etc/ssi/config.json")
}

// target is what the CLI connects with: an endpoint, where it came from, and
// (unless --insecure) the credentials of a client config file.
type target struct {
	endpoint, source string
	cfg              *pki.ClientConfig // nil with --insecure
}

// jobCredWait is how long ssi run inside a job waits for the job's
// credential: its agent writes it within a second of the job's start or
// arrival (agent/jobcreds.go).
const jobCredWait = 10 * time.Second

// awaitJobCred waits, inside a job (SSI_GPID set), for the job's credential
// at path to appear.
func (e *env) awaitJobCred(path string) {
	if e.getenv("SSI_GPID") == "" {
		return
	}
	for deadline := time.Now().Add(jobCredWait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			return
		}
	}
}

// resolve finds the credentials (the file named by SSI_CONFIG, else the first
// default config that exists) and the endpoint (--endpoint, else SSI_ENDPOINT,
// else the config's server).
func (e *env) resolve() (target, error) {
	var t target
	if e.endpoint != "" {
		t.endpoint, t.source = e.endpoint, "--endpoint"
	} else if v := e.getenv("SSI_ENDPOINT"); v != "" {
		t.endpoint, t.source = v, "SSI_ENDPOINT"
	}
	paths := e.defaultConfigs()
	if p := e.getenv("SSI_CONFIG"); p != "" {
		paths = []string{p}
		e.awaitJobCred(p)
	}
	for _, p := range paths {
		c, err := pki.LoadClientConfig(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil && e.insecure {
			continue // --insecure needs no credentials
		}
		if err != nil {
			return t, fmt.Errorf("%w (an admin makes one with 'ssi user add NAME --out FILE')", err)
		}
		if t.endpoint == "" {
			t.endpoint, t.source = c.Server, p
		}
		t.cfg = c
		break
	}
	if e.insecure {
		t.cfg = nil
		if t.endpoint == "" {
			return t, errors.New("--insecure: no endpoint: give --endpoint http://HOST:PORT or SSI_ENDPOINT")
		}
		return t, nil
	}
	if t.cfg == nil {
		return t, fmt.Errorf("no cluster configured: no config file (%s); ask an admin for one ('ssi user add NAME --out FILE') and set SSI_CONFIG, or start a local cluster with 'make up'", strings.Join(paths, ", "))
	}
	return t, nil
}

// client returns an API client acting as the user of the config file (or,
// with --insecure, as the calling unix user, trusted on its word).
func (e *env) client() (*api.Client, string, error) {
	t, err := e.resolve()
	if err != nil {
		return nil, "", err
	}
	if e.insecure {
		fmt.Fprintln(e.stderr, "ssi: WARNING: --insecure: plain HTTP, no authentication; works only with agents started with --insecure")
		u, err := user.Current()
		if err != nil {
			return nil, "", fmt.Errorf("who am I: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		c, err := api.NewClient(t.endpoint, u.Username, uid)
		if err != nil {
			return nil, "", fmt.Errorf("%w (from %s)", err, t.source)
		}
		return c, t.source, nil
	}
	if err := checkOwnCert(t.cfg, t.source, time.Now()); err != nil {
		return nil, "", err
	}
	conf, err := t.cfg.TLS()
	if err != nil {
		return nil, "", err
	}
	c, err := api.NewTLSClient(t.endpoint, conf)
	if err != nil {
		return nil, "", fmt.Errorf("%w (from %s)", err, t.source)
	}
	return c, t.source, nil
}

// explain rewrites errors for humans: an unreachable agent says where the
// endpoint came from and how to start a cluster.
func explain(err error, src string) error {
	if errors.Is(err, api.ErrRefused) {
		return fmt.Errorf("%w (endpoint from %s); your certificate may have expired or be from another cluster: ask an admin for a new config ('ssi user add')", err, src)
	}
	if errors.Is(err, api.ErrUnreachable) {
		return fmt.Errorf("%w (endpoint from %s); is the cluster up? start a local one with 'make up', or point --endpoint/SSI_ENDPOINT at a running agent", err, src)
	}
	return err
}
