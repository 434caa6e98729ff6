package cmd

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
	"github.com/factory-id/station/tpmops"
)

// unitFlags are the flags naming the units a command works on (provision,
// verify): one unit with --serial [--tpm] [--flash], or a tray with --batch.
type unitFlags struct {
	serial, tpm, flash, batch string
}

func (u *unitFlags) add(f *pflag.FlagSet, flashHelp string) {
	f.StringVar(&u.serial, "serial", "", "the unit's serial number")
	f.StringVar(&u.tpm, "tpm", "", "the unit's TPM (overrides tpm.address): sim[:SEED], swtpm://HOST:PORT, unix:///PATH, /dev/tpmrm0")
	f.StringVar(&u.flash, "flash", "", flashHelp)
	f.StringVar(&u.batch, "batch", "", "CSV file of units: serial,tpm[,flash]")
}

// requests validates the flags and returns the units, each with a valid
// serial and flash target list (usage or configuration errors: exit 2).
func (u *unitFlags) requests(cfg *configs.Config) ([]station.Request, error) {
	if (u.serial == "") == (u.batch == "") {
		return nil, cli.Usagef("give exactly one of --serial or --batch")
	}
	if u.batch != "" && (u.tpm != "" || u.flash != "") {
		return nil, cli.Usagef("--tpm and --flash go in the batch file's columns, not with --batch")
	}
	reqs := []station.Request{{Serial: u.serial, TPMAddr: u.tpm, FlashSpec: u.flash}}
	if u.batch != "" {
		var err error
		if reqs, err = readBatch(u.batch); err != nil {
			return nil, err
		}
	}
	for _, r := range reqs {
		if err := station.ValidateSerial(r.Serial); err != nil {
			return nil, err
		}
		if r.TPMAddr != "" {
			if err := tpmops.CheckAddress(r.TPMAddr); err != nil {
				return nil, cli.Usage(err)
			}
		}
		if r.FlashSpec != "" {
			if err := cfg.CheckTargets(r.FlashSpec); err != nil {
				return nil, err
			}
		}
	}
	return reqs, nil
}

// readBatch parses serial,tpm[,flash] rows. A first row starting with
// "serial" is a header; blank lines and # comments are skipped.
func readBatch(path string) ([]station.Request, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, cli.Usagef("reading batch file: %v", err)
	}
	defer f.Close()
	// Spreadsheet programs start a UTF-8 CSV with a byte order mark; it is
	// not part of the first serial (or of the "serial" header).
	br := bufio.NewReader(f)
	if bom, err := br.Peek(3); err == nil && string(bom) == "\ufeff" {
		br.Discard(3)
	}
	r := csv.NewReader(br)
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	var reqs []station.Request
	seen, seenTPM := map[string]int{}, map[string]int{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, cli.Usagef("batch file %s: %v", path, err)
		}
		line, _ := r.FieldPos(0)
		if len(reqs) == 0 && len(seen) == 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "serial") {
			seen[""] = line
			continue
		}
		if len(rec) < 2 || len(rec) > 3 || strings.TrimSpace(rec[1]) == "" {
			return nil, cli.Usagef("batch file %s line %d: want serial,tpm[,flash], got %d field(s)", path, line, len(rec))
		}
		req := station.Request{Serial: strings.TrimSpace(rec[0]), TPMAddr: strings.TrimSpace(rec[1])}
		if len(rec) == 3 {
			req.FlashSpec = strings.TrimSpace(rec[2])
		}
		if err := station.ValidateSerial(req.Serial); err != nil {
			return nil, cli.Usagef("batch file %s line %d: %v", path, line, err)
		}
		if err := tpmops.CheckAddress(req.TPMAddr); err != nil {
			return nil, cli.Usage(fmt.Errorf("batch file %s line %d: %w", path, line, err))
		}
		if prev, dup := seen[req.Serial]; dup {
			return nil, cli.Usagef("batch file %s line %d: serial %s already on line %d", path, line, req.Serial, prev)
		}
		if prev, dup := seenTPM[req.TPMAddr]; dup {
			return nil, cli.Usagef("batch file %s line %d: TPM %s already on line %d (one unit per TPM)", path, line, req.TPMAddr, prev)
		}
		seen[req.Serial], seenTPM[req.TPMAddr] = line, line
		reqs = append(reqs, req)
	}
	if len(reqs) == 0 {
		return nil, cli.Usagef("batch file %s lists no units", path)
	}
	return reqs, nil
}
