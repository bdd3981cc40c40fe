package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

func userCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Manage the users of the cluster (admin)"}
	var (
		admin  bool
		rotate bool
		out    string
		server string
		ttl    time.Duration
	)
	add := &cobra.Command{
		Use:   "add NAME --out FILE [--admin] [--ttl DURATION] [--rotate]",
		Short: "Issue a user's client certificate and write their config file (admin)",
		Long: `Issue a client certificate for the ssi user NAME and write a config file
(server, cluster CA, certificate and key; mode 0600) to FILE. The key is made
here and never leaves this machine. Give FILE to the user (as their
~/.config/ssi/config.json, or name it with SSI_CONFIG). The user NAME runs jobs
as the unix account NAME on each node; --admin makes an admin, who may act on
every job and run jobs as any account, root included.

A name has one certificate at a time: adding a name that has one is refused
unless --rotate, which issues the new certificate and revokes the old one
(every agent refuses it within a second).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := pki.CheckName(name); err != nil {
				return usageErr("user add: %v", err)
			}
			if out == "" {
				return usageErr("user add: --out FILE is required")
			}
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("user add: %s exists; remove it or choose another --out", out)
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("user add: %w", err)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			t, _ := e.resolve()
			if server == "" {
				server = t.endpoint
			}
			key, err := pki.NewKey()
			if err != nil {
				return err
			}
			csr, err := pki.NewCSR(key, name)
			if err != nil {
				return err
			}
			resp, err := cl.AddUser(cmd.Context(), api.UserRequest{Name: name, Admin: admin, CSR: string(csr), TTL: ttl, Rotate: rotate})
			if err != nil {
				return explain(err, src)
			}
			kb, err := pki.EncodeKey(key)
			if err != nil {
				return err
			}
			cfg := &pki.ClientConfig{Server: server, User: name, CA: resp.CA, Cert: resp.Cert, Key: string(kb)}
			if _, err := pki.ParseClientConfig(mustJSON(cfg)); err != nil {
				return fmt.Errorf("user add: the agent's answer does not make a valid config: %w", err)
			}
			if err := cfg.Write(out); err != nil {
				return err
			}
			cert, _ := pki.ParseCert([]byte(resp.Cert))
			fmt.Fprintf(e.stdout, "wrote %s: user %s (admin: %v), certificate serial %s valid until %s\n", out, name, admin, pki.Serial(cert), cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	add.Flags().BoolVar(&admin, "admin", false, "make an admin")
	add.Flags().StringVar(&out, "out", "", "config file to write (required; must not exist)")
	add.Flags().StringVar(&server, "server", "", "agent address written into the config (default: the one this command uses)")
	add.Flags().DurationVar(&ttl, "ttl", 0, "certificate lifetime (default 1 year)")
	add.Flags().BoolVar(&rotate, "rotate", false, "replace the user's current certificate, revoking it")
	c.AddCommand(add, userRevokeCmd(e), userListCmd(e))
	return c
}

func tokenCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Manage join tokens (admin)"}
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create [--ttl DURATION]",
		Short: "Print a token that lets a new node join: ssi agent --join ADDR --token TOKEN",
		Long: `Print a join token: a new machine joins with
  ssi agent --name NAME --listen HOST:PORT --data-dir DIR --join ADDR --token TOKEN
where ADDR is any agent of the cluster. The token names the cluster CA by hash
(the joiner checks it before trusting the cluster) and carries a secret of
which the cluster stores only a hash. It can be used until it expires.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return usageErr("token create: --ttl %s: must be positive", ttl)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			resp, err := cl.CreateToken(cmd.Context(), ttl)
			if err != nil {
				return explain(err, src)
			}
			fmt.Fprintln(e.stdout, resp.Token)
			fmt.Fprintf(e.stderr, "token expires %s\n", resp.Expires.Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token can be used")
	c.AddCommand(create, tokenListCmd(e), tokenRevokeCmd(e))
	return c
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a struct of strings always encodes
	}
	return b
}
