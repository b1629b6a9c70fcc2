package data

import (
	"math"
	"slices"
	"testing"
)

// ramp returns tokens 0, 1, ..., n-1, so that a window's tokens reveal its start.
func ramp(n int) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(i)
	}
	return t
}

// checkWindows verifies that every used row of b is the window of tokens at its start.
func checkWindows[T Token](t *testing.T, b *Batch, tokens []T) {
	t.Helper()
	c := b.Context
	for r := 0; r < b.Rows; r++ {
		s := b.Starts[r]
		if s < 0 || s+c+1 > len(tokens) {
			t.Fatalf("row %d starts at %d: window out of range", r, s)
		}
		for i := 0; i < c; i++ {
			if b.Inputs[r*c+i] != int(tokens[s+i]) || b.Targets[r*c+i] != int(tokens[s+i+1]) {
				t.Fatalf("row %d position %d: input %d target %d, want %d %d", r, i,
					b.Inputs[r*c+i], b.Targets[r*c+i], tokens[s+i], tokens[s+i+1])
			}
			if i > 0 && b.Inputs[r*c+i] != b.Targets[r*c+i-1] {
				t.Fatalf("row %d: targets are not the inputs shifted by one", r)
			}
		}
	}
}

func TestSamplerReproducible(t *testing.T) {
	tokens := ramp(1000)
	const B, C = 8, 16
	a, err := NewSampler(tokens, B, C, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSampler(tokens, B, C, 42)
	other, _ := NewSampler(tokens, B, C, 43)
	var first [][]int
	same := true
	for i := 0; i < 50; i++ {
		x := a.Next()
		checkWindows(t, x, tokens)
		if x.Rows != B || x.B != B || x.Context != C || len(x.Inputs) != B*C {
			t.Fatalf("batch shape %+v", x)
		}
		first = append(first, slices.Clone(x.Starts))
		y := b.Next()
		if !slices.Equal(x.Starts, y.Starts) || !slices.Equal(x.Inputs, y.Inputs) || !slices.Equal(x.Targets, y.Targets) {
			t.Fatalf("batch %d differs between samplers of the same seed", i)
		}
		same = same && slices.Equal(x.Starts, other.Next().Starts)
	}
	if same {
		t.Fatal("seeds 42 and 43 gave the same batches")
	}
	if a.Batches() != 50 || a.Seed() != 42 {
		t.Fatalf("batches %d seed %d", a.Batches(), a.Seed())
	}
	a.Reset()
	for i := 0; i < 5; i++ {
		if !slices.Equal(a.Next().Starts, first[i]) {
			t.Fatalf("batch %d after Reset differs", i)
		}
	}
	// Resuming: skip 20 batches, then the 21st.
	r, _ := NewSampler(tokens, B, C, 42)
	r.Skip(20)
	if !slices.Equal(r.Next().Starts, first[20]) || r.Batches() != 21 {
		t.Fatal("Skip(20) then Next is not batch 21")
	}
}

func TestSamplerCoversRange(t *testing.T) {
	// Three possible windows: starts 0, 1, 2, each drawn.
	tokens := []byte("abcdefgh")
	s, err := NewSampler(tokens, 4, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	var hit [3]int
	for i := 0; i < 100; i++ {
		b := s.Next()
		checkWindows(t, b, tokens)
		for _, st := range b.Starts {
			hit[st]++
		}
	}
	for st, n := range hit {
		if n < 80 {
			t.Fatalf("start %d drawn %d times of 400", st, n)
		}
	}
	// The smallest stream that fits one window.
	s, err = NewSampler([]byte("ab"), 2, 1, 0)
	if err != nil || s.Next().Targets[1] != 'b' {
		t.Fatal(err)
	}
}

func TestSamplerNoAllocation(t *testing.T) {
	s, _ := NewSampler([]byte("the quick brown fox jumps over the lazy dog, again and again"), 4, 8, 3)
	s.Next()
	if n := testing.AllocsPerRun(100, func() { s.Next() }); n != 0 {
		t.Fatalf("Sampler.Next allocates %v times", n)
	}
	q, _ := NewSequential(ramp(10000), 4, 8)
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := q.Next(); !ok {
			q.Reset()
		}
	}); n != 0 {
		t.Fatalf("Sequential.Next allocates %v times", n)
	}
}

func TestSequential(t *testing.T) {
	tokens := ramp(3*4*5 + 2*4 + 1) // 3 full batches of 5 windows of 4, then 2 windows
	q, err := NewSequential(tokens, 5, 4)
	if err != nil {
		t.Fatal(err)
	}
	if q.Windows() != 17 {
		t.Fatalf("windows %d", q.Windows())
	}
	var starts []int
	rows := 0
	for pass := 0; pass < 2; pass++ {
		starts, rows = starts[:0], 0
		nb := 0
		for {
			b, ok := q.Next()
			if !ok {
				break
			}
			nb++
			checkWindows(t, b, tokens)
			starts = append(starts, b.Starts[:b.Rows]...)
			rows += b.Rows
			if nb == 4 {
				if b.Rows != 2 || b.Starts[2] != -1 || slices.ContainsFunc(b.Inputs[2*4:], func(x int) bool { return x != 0 }) {
					t.Fatalf("partial batch %+v", b)
				}
			} else if b.Rows != 5 {
				t.Fatalf("batch %d has %d rows", nb, b.Rows)
			}
		}
		if nb != 4 || rows != 17 {
			t.Fatalf("pass %d: %d batches, %d windows", pass, nb, rows)
		}
		for w, s := range starts {
			if s != 4*w {
				t.Fatalf("window %d starts at %d", w, s)
			}
		}
		q.Reset()
	}
	// Every token but the first is a target exactly once, up to the last whole window.
	if last := starts[len(starts)-1] + 4; last != len(tokens)-1 {
		t.Fatalf("last target %d of %d tokens", last, len(tokens))
	}
}

func TestBatchErrors(t *testing.T) {
	if _, err := NewSampler([]byte("abc"), 1, 3, 0); err == nil {
		t.Fatal("window longer than the stream accepted")
	}
	if _, err := NewSampler([]byte("abcdef"), 0, 3, 0); err == nil {
		t.Fatal("batch 0 accepted")
	}
	if _, err := NewSequential([]byte("abcdef"), 1, 0); err == nil {
		t.Fatal("context 0 accepted")
	}
}

func TestUnigramEntropy(t *testing.T) {
	all := make([]byte, 256*3)
	for i := range all {
		all[i] = byte(i)
	}
	if h := UnigramEntropy(all); math.Abs(h-math.Log(256)) > 1e-12 {
		t.Fatalf("uniform bytes: %v nats", h)
	}
	if h := UnigramEntropyBits(all); math.Abs(h-8) > 1e-12 {
		t.Fatalf("uniform bytes: %v bits", h)
	}
	if h := UnigramEntropy([]byte("aaaa")); h != 0 {
		t.Fatalf("constant stream: %v", h)
	}
	if h := UnigramEntropy([]byte{}); h != 0 {
		t.Fatalf("empty stream: %v", h)
	}
	// p = (1/2, 1/4, 1/4): 1.5 bits, on the generic (non-byte) path too.
	if h := UnigramEntropyBits([]int{5, 5, 9, 1000}); math.Abs(h-1.5) > 1e-12 {
		t.Fatalf("generic: %v bits", h)
	}
	if h := UnigramEntropyBits([]byte{5, 5, 9, 200}); math.Abs(h-1.5) > 1e-12 {
		t.Fatalf("bytes: %v bits", h)
	}
	// Cross-entropy on the training stream itself with no smoothing is the entropy.
	tr := []byte("hello, world; hello, gradlab")
	ce, err := UnigramCrossEntropy(tr, tr, 256, 0)
	if err != nil || math.Abs(ce-UnigramEntropy(tr)) > 1e-12 {
		t.Fatalf("%v %v", ce, err)
	}
	// Add-one smoothing: p(z) = 1/(4+256) for a token unseen in "aabb".
	ce, err = UnigramCrossEntropy([]byte("aabb"), []byte("z"), 256, 1)
	if err != nil || math.Abs(ce-math.Log(260)) > 1e-12 {
		t.Fatalf("%v %v", ce, err)
	}
	if _, err := UnigramCrossEntropy([]byte("aabb"), []byte("z"), 256, 0); err == nil {
		t.Fatal("unseen token with no smoothing accepted")
	}
	if _, err := UnigramCrossEntropy([]int{1, 300}, []int{1}, 256, 1); err == nil {
		t.Fatal("token outside the vocabulary accepted")
	}
	if _, err := UnigramCrossEntropy([]byte("a"), nil, 256, 1); err == nil {
		t.Fatal("empty evaluation accepted")
	}
}
