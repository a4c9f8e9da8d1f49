// The present of Sprig's date functions, fixed for a request: `now`, and
// the functions that read the clock (ago, durationRound of a time, and
// date/dateInZone/htmlDate/htmlDateInZone, whose argument defaults to the
// present) take the given instant instead of time.Now. Everything else
// (formatting, zones, durations) is Sprig's and Go's own code.
package main

import (
	"text/template"
	"time"
)

func fixClock(funcs template.FuncMap, now time.Time) {
	// A time as date.go's switches accept it; anything else is "now".
	instant := func(d interface{}) interface{} {
		switch d.(type) {
		case time.Time, *time.Time, int64, int, int32:
			return d
		}
		return now
	}
	date := funcs["date"].(func(string, interface{}) string)
	dateInZone := funcs["dateInZone"].(func(string, interface{}, string) string)
	htmlDate := funcs["htmlDate"].(func(interface{}) string)
	htmlDateInZone := funcs["htmlDateInZone"].(func(interface{}, string) string)
	durationRound := funcs["durationRound"].(func(interface{}) string)
	funcs["now"] = func() time.Time { return now }
	funcs["date"] = func(f string, d interface{}) string { return date(f, instant(d)) }
	funcs["dateInZone"] = func(f string, d interface{}, z string) string { return dateInZone(f, instant(d), z) }
	funcs["date_in_zone"] = funcs["dateInZone"]
	funcs["htmlDate"] = func(d interface{}) string { return htmlDate(instant(d)) }
	funcs["htmlDateInZone"] = func(d interface{}, z string) string { return htmlDateInZone(instant(d), z) }
	// date.go's dateAgo with now for time.Now.
	funcs["ago"] = func(d interface{}) string {
		var t time.Time
		switch d := d.(type) {
		default:
			t = now
		case time.Time:
			t = d
		case int64:
			t = time.Unix(d, 0)
		case int:
			t = time.Unix(int64(d), 0)
		}
		return now.Sub(t).Round(time.Second).String()
	}
	// durationRound of a time is time.Since: the same as its int64 case
	// with now.Sub.
	funcs["durationRound"] = func(d interface{}) string {
		if t, ok := d.(time.Time); ok {
			return durationRound(int64(now.Sub(t)))
		}
		return durationRound(d)
	}
}
