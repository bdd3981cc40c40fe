package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

func userRevokeCmd(e *env) *cobra.Command {
	var serial string
	c := &cobra.Command{
		Use:   "revoke NAME | --serial HEX",
		Short: "Revoke a user's certificate: every agent refuses it within a second (admin)",
		Long: `Revoke the current certificate of user NAME (as 'ssi user list' shows it),
or any certificate of the cluster CA by its serial number (--serial, hex, as
'ssi user add' printed it). Every agent refuses the certificate from then on,
with a message saying when it was revoked and by whom. Issue a new one with
'ssi user add NAME --out FILE'.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req api.RevokeRequest
			switch {
			case len(args) == 1 && serial == "":
				if err := pki.CheckName(args[0]); err != nil {
					return usageErr("user revoke: %v", err)
				}
				req.Name = args[0]
			case len(args) == 0 && serial != "":
				s, err := pki.ParseSerial(serial)
				if err != nil {
					return usageErr("user revoke: --serial: %v", err)
				}
				req.Serial = s
			default:
				return usageErr("user revoke: give a user NAME or --serial HEX, one of the two")
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			rv, err := cl.Revoke(cmd.Context(), req)
			if err != nil {
				return explain(err, src)
			}
			who := rv.User
			if who == "" {
				who = "an unregistered certificate"
			} else {
				who = "user " + who
			}
			fmt.Fprintf(e.stdout, "revoked serial %s (%s) at %s\n", rv.Serial, who, rv.At.UTC().Format(time.RFC3339Nano))
			return nil
		},
	}
	c.Flags().StringVar(&serial, "serial", "", "revoke the certificate with this serial number (hex)")
	return c
}

func userListCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list [-o json]",
		Short: "List the users' current certificates (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return usageErr("user list: -o %q: want json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			users, err := cl.Users(cmd.Context())
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				b, _ := json.MarshalIndent(users, "", "  ")
				fmt.Fprintln(e.stdout, string(b))
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADMIN\tSERIAL\tEXPIRES\tBY")
			for _, u := range users {
				fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\n", u.Name, u.Admin, u.Serial, u.Expires.UTC().Format(time.RFC3339), u.By)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "json: machine-readable")
	return c
}

func tokenListCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list [-o json]",
		Short: "List the join tokens that can still be used (admin; their secrets are not stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return usageErr("token list: -o %q: want json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			toks, err := cl.Tokens(cmd.Context())
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				b, _ := json.MarshalIndent(toks, "", "  ")
				fmt.Fprintln(e.stdout, string(b))
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEXPIRES\tCREATOR")
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Expires.UTC().Format(time.RFC3339), t.Creator)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "json: machine-readable")
	return c
}

func tokenRevokeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: no node can join with it any more (admin)",
		Long: `Revoke the join token ID (the part between '::' and '.' of the token, as
'ssi token list' shows it). Nodes that joined with it keep their certificates.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			if err := cl.RevokeToken(cmd.Context(), args[0]); err != nil {
				return explain(err, src)
			}
			fmt.Fprintf(e.stdout, "revoked join token %s\n", args[0])
			return nil
		},
	}
}
