package cmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/certgen"
)

type caInitRootOptions struct {
	caKeyFlags
}

// newCAInitRootCommand is `station ca init-root`.
func newCAInitRootCommand(g *globals) *cobra.Command {
	o := &caInitRootOptions{}
	c := &cobra.Command{
		Use:   "init-root --subject CN --out DIR [--key-uri URI]",
		Short: "Create the offline self-signed root CA",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			kt, err := o.check()
			if err != nil {
				return err
			}
			pw := newPasswords(c, g)
			keyFile, password, err := o.keyPassword(pw)
			pw.close()
			if err != nil {
				return err
			}
			key, err := certgen.CreateKey(o.keyURI, kt)
			if err != nil {
				return err
			}
			defer key.Close()
			g.log().Info("creating root", "subject", o.subject, "key_type", fmt.Sprint(kt))
			cert, err := certgen.NewRoot(key.Signer, certgen.CAOptions{
				Subject: o.subject, Validity: o.validity, PathLen: o.pathLen, NameConstraints: o.nameConstraints, Now: time.Now(),
			})
			if err != nil {
				return err
			}
			return o.writeCA(c, g, "root CA", cert, key, keyFile, password, nil)
		},
	}
	o.add(c, 20*365*24*time.Hour, -1, "CA levels allowed below the root (-1: unlimited)")
	return c
}
