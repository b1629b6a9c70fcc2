package harness

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// CSVWriter writes a CSV file with a fixed header. It is not safe for concurrent use.
type CSVWriter struct {
	f    *os.File
	buf  *bufio.Writer
	w    *csv.Writer
	cols int
}

// CSV creates name in the experiment's directory with the given header row.
func (c *Context) CSV(name string, header ...string) (*CSVWriter, error) {
	f, err := os.Create(c.Path(name))
	if err != nil {
		return nil, err
	}
	buf := bufio.NewWriterSize(f, 1<<16)
	w := &CSVWriter{f: f, buf: buf, w: csv.NewWriter(buf), cols: len(header)}
	if err := w.w.Write(header); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Row writes one row; values are formatted by Cell. It returns an error if the row's length differs from
// the header's.
func (w *CSVWriter) Row(vals ...any) error {
	if len(vals) != w.cols {
		return fmt.Errorf("csv row has %d values, header has %d", len(vals), w.cols)
	}
	rec := make([]string, len(vals))
	for i, v := range vals {
		rec[i] = Cell(v)
	}
	return w.w.Write(rec)
}

// Close flushes and closes the file.
func (w *CSVWriter) Close() error {
	w.w.Flush()
	if err := w.w.Error(); err != nil {
		w.f.Close()
		return err
	}
	if err := w.buf.Flush(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}

// Cell formats a value for a CSV cell: floats in the shortest form that round-trips, NaN as empty.
func Cell(v any) string {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) {
			return ""
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return Cell(float64(x))
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// Report builds a Markdown document.
type Report struct {
	b strings.Builder
}

// H1 adds a level-1 heading.
func (r *Report) H1(s string) { fmt.Fprintf(&r.b, "# %s\n\n", s) }

// H2 adds a level-2 heading.
func (r *Report) H2(s string) { fmt.Fprintf(&r.b, "## %s\n\n", s) }

// H3 adds a level-3 heading.
func (r *Report) H3(s string) { fmt.Fprintf(&r.b, "### %s\n\n", s) }

// P adds a paragraph.
func (r *Report) P(format string, args ...any) { fmt.Fprintf(&r.b, format+"\n\n", args...) }

// Quote adds a block quote.
func (r *Report) Quote(s string) { fmt.Fprintf(&r.b, "> %s\n\n", s) }

// Bullets adds a bulleted list.
func (r *Report) Bullets(items ...string) {
	for _, it := range items {
		fmt.Fprintf(&r.b, "- %s\n", it)
	}
	r.b.WriteString("\n")
}

// Table adds a table; cells are escaped for pipes.
func (r *Report) Table(header []string, rows [][]string) {
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	row := func(cells []string) {
		r.b.WriteString("|")
		for _, c := range cells {
			r.b.WriteString(" " + esc(c) + " |")
		}
		r.b.WriteString("\n")
	}
	row(header)
	r.b.WriteString("|")
	for range header {
		r.b.WriteString("---|")
	}
	r.b.WriteString("\n")
	for _, rw := range rows {
		row(rw)
	}
	r.b.WriteString("\n")
}

// Image adds an image reference (path relative to the report).
func (r *Report) Image(alt, path string) { fmt.Fprintf(&r.b, "![%s](%s)\n\n", alt, path) }

// Code adds a fenced code block.
func (r *Report) Code(s string) { fmt.Fprintf(&r.b, "```\n%s\n```\n\n", strings.TrimRight(s, "\n")) }

// String returns the document.
func (r *Report) String() string { return r.b.String() }

// WriteReport writes the report to name in the experiment's directory.
func (c *Context) WriteReport(name string, r *Report) error {
	return os.WriteFile(c.Path(name), []byte(r.String()), 0o644)
}

// F formats a float compactly for reports (4 significant digits; NaN as "–").
func F(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	if x == 0 {
		return "0"
	}
	a := math.Abs(x)
	if a >= 1e-3 && a < 1e5 {
		v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 4, 64), 64)
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(x, 'e', 3, 64)
}
