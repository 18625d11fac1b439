package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/superd/superd/config/legacy"
)

// The text of `superd convert --help`.
const (
	convertAbout = `Read inetd.conf (openbsd-inetd and inetutils-inetd forms) or xinetd
configuration (xinetd.conf, its includes, /etc/xinetd.d) and print an
equivalent services.toml on standard output. A folder stands for its files,
read as xinetd reads an includedir. The dialect of each file is detected
from its content unless --from says it. Every setting superd cannot carry
over is a "# NOT CONVERTED: ... — why" comment at its service and a warning
on standard error; a service whose unconverted settings would let more
clients in is converted disabled. Exit status 0 when it wrote a
configuration, warnings included; 1 when an input cannot be read or parsed.`
	convertExample = `  superd convert /etc/xinetd.conf > services.toml && superd check --config services.toml`
)

func cmdConvert(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = convertUsage(fs)
	from := fs.String("from", "", "the `dialect` of every FILE: inetd or xinetd (default: detected from each file's content)")
	files, status, done := parseConvertArgs(fs, args)
	if done {
		return status
	}
	dialect, err := legacy.ParseDialect(*from)
	if err != nil {
		fmt.Fprintf(stderr, "superd convert: --from must be inetd or xinetd, not %q\n", *from)
		return 2
	}
	res, err := legacy.Convert(files, legacy.Options{From: dialect})
	if err != nil {
		printConvertErrors(stderr, err)
		return 1
	}
	// Written whole or not at all: a failed write leaves no half file
	// behind a redirection that a reader could take for the result.
	var out bytes.Buffer
	if err := res.WriteTOML(&out); err != nil {
		fmt.Fprintln(stderr, "superd convert: writing the configuration:", err)
		return 1
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		fmt.Fprintln(stderr, "superd convert: writing the configuration:", err)
		return 1
	}
	bw := bufio.NewWriter(stderr)
	defer bw.Flush()
	warnings := res.Warnings()
	for _, w := range warnings {
		fmt.Fprintln(bw, "superd convert: warning:", w)
	}
	fmt.Fprintf(bw, "superd convert: %s\n", summary(res, len(warnings)))
	return 0
}

// parseConvertArgs parses flags and FILE arguments in any order (flag
// stops at the first argument that is not a flag).
func parseConvertArgs(fs *flag.FlagSet, args []string) (files []string, status int, done bool) {
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			return nil, 0, true
		case err != nil:
			return nil, 2, true
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) == 0 {
		fmt.Fprintln(fs.Output(), "superd convert: name at least one FILE to convert (inetd.conf, xinetd.conf or a file of /etc/xinetd.d)")
		return nil, 2, true
	}
	return files, 0, false
}

// convertUsage is usageFunc's text with the FILE arguments on the usage
// line.
func convertUsage(fs *flag.FlagSet) func() {
	return func() {
		var b bytes.Buffer
		out := fs.Output()
		fs.SetOutput(&b)
		usageFunc(fs, convertAbout, convertExample)()
		fs.SetOutput(out)
		text := b.String()
		if line, rest, ok := strings.Cut(text, "\n"); ok {
			text = line + " FILE...\n" + rest
		}
		io.WriteString(out, text)
	}
}

// printConvertErrors prints each error of a failed conversion on its
// own line.
func printConvertErrors(w io.Writer, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintln(w, "superd convert:", e)
	}
	fmt.Fprintln(w, "superd convert: nothing written")
}

// summary says what was converted: "9 services (3 disabled), 2 not
// converted, 4 warnings".
func summary(res *legacy.Result, warnings int) string {
	var tables, disabled, skipped int
	for _, s := range res.Services {
		switch {
		case s.Skipped:
			skipped++
		default:
			tables++
			for _, k := range s.Keys {
				if k.Name == "disabled" && k.Value == true {
					disabled++
				}
			}
		}
	}
	return fmt.Sprintf("%s converted (%d disabled), %d not converted, %s; check the result with superd check --config FILE",
		plural(tables, "service"), disabled, skipped, plural(warnings, "warning"))
}
