// tzif_ref: zone files read by Go's time package (Debian's Go 1.19):
// time.LoadLocationFromTZData, then a time at each asked instant in that
// location (Time.Zone, Time.IsDST, Time.Format), as Sprig's date functions
// see a zone of /usr/share/zoneinfo. The reference for tzif_diff.cpp.
//
// Input: one request per line, "<hex file bytes> <instants>", the instants
// Unix seconds separated by commas. Output: one line per request: "E" when
// Go refuses the data, else one answer per instant separated by spaces,
// "<hex name>,<offset>,<0|1 DST>,<hex Format(layout)>" ("-" for an empty
// hex field).
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Every element of a layout that depends on the zone, and the civil time.
const layout = "2006-01-02T15:04:05 Mon 002 MST -07:00:00 Z0700 Z07"

func hexOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return hex.EncodeToString([]byte(s))
}

func fail(what string) {
	fmt.Fprintln(os.Stderr, "tzif_ref:", what)
	os.Exit(2)
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<24), 1<<24)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		fields := strings.Split(sc.Text(), " ")
		if len(fields) != 2 {
			fail("a request is not \"<hex> <instants>\"")
		}
		data, err := hex.DecodeString(fields[0])
		if err != nil {
			fail("a request's data is not hex")
		}
		loc, err := time.LoadLocationFromTZData("Zone", data)
		if err != nil {
			fmt.Fprintln(w, "E")
			continue
		}
		var answers []string
		for _, s := range strings.Split(fields[1], ",") {
			sec, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				fail("an instant is not a number")
			}
			t := time.Unix(sec, 0).In(loc)
			name, offset := t.Zone()
			dst := 0
			if t.IsDST() {
				dst = 1
			}
			answers = append(answers, fmt.Sprintf("%s,%d,%d,%s", hexOrDash(name), offset, dst, hexOrDash(t.Format(layout))))
		}
		fmt.Fprintln(w, strings.Join(answers, " "))
	}
	if err := sc.Err(); err != nil {
		fail(err.Error())
	}
}
