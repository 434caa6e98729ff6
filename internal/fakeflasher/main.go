// Command fakeflasher is a stand-in flashing tool for flash's tests: it
// stores firmware and a bundle into a file that plays the device's flash,
// reads them back, and can be told to misbehave.
//
//	fakeflasher write -device FILE -firmware F -bundle B [-serial S] [-port P]
//	fakeflasher read  -device FILE [-what bundle|firmware] [-size N] [-out FILE] [-fw-out FILE]
//
// FAKEFLASHER_MODE selects the behaviour of write (and read):
//
//	ok       store and exit 0
//	fail     print an error and exit 1 without storing
//	hang     start a helper child, then sleep forever (both write their pid
//	         to FAKEFLASHER_PIDS, one per line)
//	corrupt  store the bundle with one byte flipped, exit 0
//	noop     exit 0 without storing anything (a tool that lies)
//	flaky    fail FAKEFLASHER_FLAKY_N times (counted in FAKEFLASHER_STATE), then ok
//	chatty   print FAKEFLASHER_CHATTY bytes of output, then ok
//	echo     print the bundle file's contents (as hex and raw), then ok
//	gate     wait until the file FAKEFLASHER_GATE/SERIAL exists (a flash that
//	         takes as long as the test wants), then behave as the mode the
//	         file holds (empty: ok)
//
// Every run appends its argv as one JSON line to FAKEFLASHER_ARGV_LOG and its
// environment's STATION_* variables to FAKEFLASHER_ENV_LOG when those are set.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const magic = "FAKEDEV1"

func main() {
	logArgv()
	if len(os.Args) < 2 {
		fatal("usage: fakeflasher write|read|sleep ...")
	}
	switch os.Args[1] {
	case "sleep":
		writePid()
		time.Sleep(time.Hour)
	case "write":
		write(os.Args[2:])
	case "read":
		read(os.Args[2:])
	default:
		fatal("unknown command %q", os.Args[1])
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fakeflasher: "+format+"\n", args...)
	os.Exit(1)
}

func logArgv() {
	if p := os.Getenv("FAKEFLASHER_ARGV_LOG"); p != "" {
		line, _ := json.Marshal(os.Args[1:])
		appendLine(p, string(line))
	}
	if p := os.Getenv("FAKEFLASHER_ENV_LOG"); p != "" {
		for _, kv := range os.Environ() { // everything the tool was given
			appendLine(p, kv)
		}
		appendLine(p, "--")
	}
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fatal("%v", err)
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

func writePid() {
	if p := os.Getenv("FAKEFLASHER_PIDS"); p != "" {
		appendLine(p, strconv.Itoa(os.Getpid()))
	}
}

func mode() string {
	if m := os.Getenv("FAKEFLASHER_MODE"); m != "" {
		return m
	}
	return "ok"
}

func write(args []string) {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	device := fs.String("device", "", "device file")
	firmware := fs.String("firmware", "", "firmware image")
	bundle := fs.String("bundle", "", "bundle image")
	serial := fs.String("serial", "", "unit serial (printed only)")
	port := fs.String("port", "", "port (printed only)")
	fs.Parse(args)
	if fs.NArg() != 0 {
		fatal("unexpected arguments %q", fs.Args())
	}
	fw, err := os.ReadFile(*firmware)
	if err != nil {
		fatal("%v", err)
	}
	bd, err := os.ReadFile(*bundle)
	if err != nil {
		fatal("%v", err)
	}
	fmt.Printf("flashing unit %s on port %s: firmware %d bytes, bundle %d bytes\n", *serial, *port, len(fw), len(bd))
	m := mode()
	if m == "gate" {
		m = waitGate(*serial)
	}
	switch m {
	case "ok":
	case "fail":
		fatal("device not responding on %s", *port)
	case "hang":
		writePid()
		child := exec.Command(os.Args[0], "sleep")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			fatal("%v", err)
		}
		time.Sleep(time.Hour)
	case "corrupt":
		bd = append([]byte{}, bd...)
		bd[len(bd)/2] ^= 0x01
	case "noop":
		fmt.Println("done")
		return
	case "flaky":
		n, _ := strconv.Atoi(os.Getenv("FAKEFLASHER_FLAKY_N"))
		state := os.Getenv("FAKEFLASHER_STATE")
		b, _ := os.ReadFile(state)
		done, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if done < n {
			os.WriteFile(state, []byte(strconv.Itoa(done+1)), 0o600)
			fatal("transient failure %d of %d", done+1, n)
		}
	case "chatty":
		n, _ := strconv.Atoi(os.Getenv("FAKEFLASHER_CHATTY"))
		line := strings.Repeat("x", 99) + "\n"
		for i := 0; i < n/100; i++ {
			os.Stdout.WriteString(line)
		}
		fmt.Println("END-OF-OUTPUT")
	case "echo":
		fmt.Println(hex.EncodeToString(bd))
		os.Stdout.Write(bd)
		fmt.Println()
	default:
		fatal("unknown FAKEFLASHER_MODE %q", m)
	}
	var img []byte
	img = append(img, magic...)
	img = binary.BigEndian.AppendUint32(img, uint32(len(fw)))
	img = append(img, fw...)
	img = binary.BigEndian.AppendUint32(img, uint32(len(bd)))
	img = append(img, bd...)
	if err := os.WriteFile(*device, img, 0o600); err != nil {
		fatal("%v", err)
	}
	fmt.Println("done")
}

func load(device string) (fw, bd []byte, err error) {
	img, err := os.ReadFile(device)
	if err != nil {
		return nil, nil, err
	}
	if !strings.HasPrefix(string(img), magic) {
		return nil, nil, errors.New("device is blank")
	}
	img = img[len(magic):]
	n := binary.BigEndian.Uint32(img)
	fw, img = img[4:4+n], img[4+n:]
	n = binary.BigEndian.Uint32(img)
	return fw, img[4 : 4+n], nil
}

func read(args []string) {
	fs := flag.NewFlagSet("read", flag.ExitOnError)
	device := fs.String("device", "", "device file")
	what := fs.String("what", "bundle", "bundle or firmware")
	out := fs.String("out", "", "output file (default stdout)")
	fwOut := fs.String("fw-out", "", "also write the firmware to this file")
	size := fs.Int("size", -1, "read this many bytes of the bundle (like a flash dump of a region)")
	fs.Parse(args)
	fw, bd, err := load(*device)
	if err != nil {
		fatal("%v", err)
	}
	if *fwOut != "" {
		if err := os.WriteFile(*fwOut, fw, 0o600); err != nil {
			fatal("%v", err)
		}
	}
	data := bd
	if *what == "firmware" {
		data = fw
	}
	if *size >= 0 {
		data = append(data, make([]byte, max(0, *size-len(data)))...)[:*size]
	}
	if *out == "" {
		os.Stdout.Write(data)
		return
	}
	if err := os.WriteFile(*out, data, 0o600); err != nil {
		fatal("%v", err)
	}
}

// waitGate waits for the test to open the unit's gate file and returns the
// mode it holds ("ok" when empty).
func waitGate(serial string) string {
	dir := os.Getenv("FAKEFLASHER_GATE")
	if dir == "" || serial == "" {
		fatal("gate mode needs FAKEFLASHER_GATE and -serial")
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, serial))
		if err == nil {
			if m := strings.TrimSpace(string(b)); m != "" {
				return m
			}
			return "ok"
		}
		time.Sleep(10 * time.Millisecond) // the tool at work
	}
}
