package zeroth

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func randDense64(r *rand.Rand, scale float64, shape ...int) *tensor.Dense {
	n := 1
	for _, s := range shape {
		n *= s
	}
	b := make([]float64, n)
	for i := range b {
		b[i] = scale * r.NormFloat64()
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(b))
}

func to32(d *tensor.Dense) *tensor.Dense {
	src := d.Float64s()
	b := make([]float32, len(src))
	for i, v := range src {
		b[i] = float32(v)
	}
	return tensor.New(tensor.WithShape(d.Shape().Clone()...), tensor.WithBacking(b))
}

// TestQuantizeRoundTrip: quantise → unpack → dequantise reproduces every weight within Δ/2 (symmetric) or
// Δ (asymmetric), the codes stay in range, and the byte accounting is ⌈in·out·bits/8⌉ + scales (+ zeros).
func TestQuantizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const in, out = 64, 24
	w64 := randDense64(r, 0.5, in, out)
	w64.Float64s()[5] = 3 // an outlier
	for _, dt := range []string{"f64", "f32"} {
		for _, bits := range []QuantBits{Int4, Int8} {
			for _, g := range []int{8, 32} {
				for _, asym := range []bool{false, true} {
					w := w64
					if dt == "f32" {
						w = to32(w64)
					}
					var opts []QuantOption
					if asym {
						opts = append(opts, WithZeroPoint())
					}
					q, err := Quantize("q", w, bits, g, opts...)
					if err != nil {
						t.Fatal(err)
					}
					deq := q.Dequantize()
					lo, hi := -(1 << (int(bits) - 1)), 1<<(int(bits)-1)-1
					if !asym {
						lo, hi = -bits.qmaxSym(), bits.qmaxSym()
					}
					worst := 0.0
					for i := 0; i < in; i++ {
						for j := 0; j < out; j++ {
							c := q.Code(i, j)
							if c < lo || c > hi {
								t.Fatalf("%s int%d g%d asym=%v: code %d out of [%d, %d]", dt, bits, g, asym, c, lo, hi)
							}
							d := q.scaleAt((i/g)*out + j)
							wv, dv := at(w, i*out+j), at(deq, i*out+j)
							// the unpacked code reproduces the dequantised value
							if want := d * float64(c-q.ZeroPoint(i, j)); math.Abs(want-dv) > 1e-6*math.Abs(want) {
								t.Fatalf("dequant %v != Δ(w̄−z) %v", dv, want)
							}
							bound := d / 2
							if asym {
								bound = d
							}
							e := math.Abs(wv - dv)
							if e > bound*(1+1e-6)+1e-12 {
								t.Fatalf("%s int%d g%d asym=%v: |w − ŵ| = %g > bound %g at (%d,%d)", dt, bits, g, asym, e, bound, i, j)
							}
							worst = math.Max(worst, e/d)
						}
					}
					b := q.Bytes()
					wantCodes := int64(in * out * int(bits) / 8)
					ss := int64(4)
					if dt == "f64" {
						ss = 8
					}
					wantZeros := int64(0)
					if asym {
						wantZeros = int64(in / g * out)
					}
					if b.Codes != wantCodes || b.Scales != int64(in/g*out)*ss || b.ZeroPoints != wantZeros {
						t.Fatalf("bytes %+v, want codes %d scales %d zeros %d", b, wantCodes, int64(in/g*out)*ss, wantZeros)
					}
					t.Logf("%s int%d g%-2d asym=%-5v worst |w−ŵ|/Δ = %.3f, %d bytes (%.2f bits/weight)", dt, bits, g, asym, worst,
						b.Total(), 8*float64(b.Total())/float64(in*out))
				}
			}
		}
	}
}

func at(d *tensor.Dense, k int) float64 {
	if d.Dtype() == tensor.Float64 {
		return d.Float64s()[k]
	}
	return float64(d.Float32s()[k])
}

// TestQuantizedPackingExplicit checks the packed int4 layout against explicit codes, including −8 and 7.
func TestQuantizedPackingExplicit(t *testing.T) {
	codes := []int8{-8, 7, 0, -1, 3, -7, 1, 2, -3} // 3×3, odd count: the last byte holds one code
	q, err := NewQuantizedLinear("p", 3, 3, Int4, 1, codes, []float64{1, 1, 1, 1, 1, 1, 1, 1, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.codes) != 5 {
		t.Fatalf("packed into %d bytes, want 5", len(q.codes))
	}
	for k, c := range codes {
		if got := q.Code(k/3, k%3); got != int(c) {
			t.Fatalf("code %d: got %d want %d", k, got, c)
		}
	}
	if _, err := NewQuantizedLinear("p", 3, 3, Int4, 1, []int8{8, 0, 0, 0, 0, 0, 0, 0, 0}, make([]float64, 9), nil); err == nil {
		t.Fatal("code 8 accepted for int4")
	}
	if _, err := Quantize("p", tensor.New(tensor.WithShape(6, 2), tensor.Of(tensor.Float64)), Int4, 4); err == nil {
		t.Fatal("group 4 accepted for in = 6")
	}
}

// TestQuantizedForwardExact: the layer's forward is exactly x·Dequantize() (same BLAS product), float32 and
// float64, and two layers of equal shape in one graph are not merged by the op hash.
func TestQuantizedForwardExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		xv, w1, w2 := randDense64(r, 1, 5, 32), randDense64(r, 0.3, 32, 8), randDense64(r, 0.3, 32, 8)
		if dt == tensor.Float32 {
			xv, w1, w2 = to32(xv), to32(w1), to32(w2)
		}
		q1, _ := Quantize("l1", w1, Int4, 8)
		q2, _ := Quantize("l2", w2, Int8, 16)
		g := G.NewGraph()
		x := G.NewMatrix(g, dt, G.WithShape(5, 32), G.WithName("x"), G.WithValue(xv))
		y1, err := q1.Forward(x)
		if err != nil {
			t.Fatal(err)
		}
		y2, err := q2.Forward(x)
		if err != nil {
			t.Fatal(err)
		}
		var v1, v2 G.Value
		G.Read(y1, &v1)
		G.Read(y2, &v2)
		vm := G.NewTapeMachine(g)
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		vm.Close()
		for _, c := range []struct {
			q *QuantizedLinear
			v G.Value
		}{{q1, v1}, {q2, v2}} {
			wt, err := tensor.MatMul(xv, c.q.Dequantize())
			if err != nil {
				t.Fatal(err)
			}
			want := wt.(*tensor.Dense)
			got := c.v.(*tensor.Dense)
			for k := 0; k < 5*8; k++ {
				if at(got, k) != at(want, k) {
					t.Fatalf("%v %s: y[%d] = %v, x·dequant(W) = %v", dt, c.q.Name(), k, at(got, k), at(want, k))
				}
			}
		}
	}
}

// TestQuantizedGradFD: float64 central finite differences of L = Σ R ⊙ (x·W(Δ)) + ½‖x·W(Δ)‖² against the
// TapeMachine's symbolic gradients (SymDiff) w.r.t. x and the scales, symmetric int4 and asymmetric int8,
// and the same through the LispMachine (DoDiff).
func TestQuantizedGradFD(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n, in, out = 3, 16, 5
	for _, tc := range []struct {
		bits QuantBits
		g    int
		asym bool
	}{{Int4, 4, false}, {Int8, 8, true}} {
		var opts []QuantOption
		if tc.asym {
			opts = append(opts, WithZeroPoint())
		}
		q, err := Quantize("qs", randDense64(r, 0.4, in, out), tc.bits, tc.g, opts...)
		if err != nil {
			t.Fatal(err)
		}
		xv, rv := randDense64(r, 1, n, in), randDense64(r, 1, n, out)
		lossAt := func() float64 {
			y, _ := tensor.MatMul(xv, q.Dequantize())
			s := 0.0
			for k, v := range y.(*tensor.Dense).Float64s() {
				s += rv.Float64s()[k]*v + 0.5*v*v
			}
			return s
		}
		fd := func(p []float64) []float64 {
			gr := make([]float64, len(p))
			for k := range p {
				old := p[k]
				h := 1e-6 * math.Max(1, math.Abs(old))
				p[k] = old + h
				lp := lossAt()
				p[k] = old - h
				lm := lossAt()
				p[k] = old
				gr[k] = (lp - lm) / (2 * h)
			}
			return gr
		}
		wantX, wantS := fd(xv.Float64s()), fd(q.Scales().Float64s())
		for _, machine := range []string{"tape", "lisp"} {
			g := G.NewGraph()
			x := G.NewMatrix(g, tensor.Float64, G.WithShape(n, in), G.WithName("x"), G.WithValue(xv))
			s := q.ScaleNode(g)
			y, err := q.Forward(x)
			if err != nil {
				t.Fatal(err)
			}
			rn := G.NewConstant(rv, G.WithName("R"))
			cost := G.Must(G.Add(G.Must(G.Sum(G.Must(G.HadamardProd(y, rn)))),
				G.Must(G.Mul(G.NewConstant(0.5), G.Must(G.Sum(G.Must(G.Square(y))))))))
			var vm G.VM
			if machine == "tape" {
				if _, err := G.Grad(cost, x, s); err != nil {
					t.Fatal(err)
				}
				vm = G.NewTapeMachine(g, G.BindDualValues(x, s))
			} else {
				vm = G.NewLispMachine(g)
			}
			if err := vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name string
				node *G.Node
				want []float64
			}{{"x", x, wantX}, {"scales", s, wantS}} {
				gv, err := c.node.Grad()
				if err != nil {
					t.Fatal(err)
				}
				got := gv.(*tensor.Dense).Float64s()
				for k := range c.want {
					if math.Abs(got[k]-c.want[k]) > 1e-6*math.Max(1, math.Abs(c.want[k])) {
						t.Fatalf("int%d %s: ∂L/∂%s[%d] = %v, finite difference %v", tc.bits, machine, c.name, k, got[k], c.want[k])
					}
				}
			}
			vm.Close()
		}
	}
}
