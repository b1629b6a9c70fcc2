package solvers

import "testing"

func TestGaLoreConvergence(t *testing.T) {
	mxRunConvergence(t, []mxCase{
		{name: "galore-r3", build: func(o ...Option) (Solver, error) { return NewGaLore(o...) },
			opts: []Option{Set("rank", 3), Set("update_proj_gap", 20), Set("scale", 1)}, lsLR: 0.05, lsN: 3000, quad: 0.05},
		{name: "galore-full-rank-channel-first", build: func(o ...Option) (Solver, error) { return NewGaLore(o...) },
			opts: []Option{Set("rank", 8), Set("update_proj_gap", 50), SetFlag("channel_first", true)}, lsLR: 0.2, lsN: 2000, quad: 0.05},
	})
}

func TestGaLoreRoundTrip(t *testing.T) {
	mxRunRoundTrip(t, "galore", func() (Solver, error) {
		return NewGaLore(WithLR(0.01), Set("rank", 2), Set("update_proj_gap", 3), WithWeightDecay(0.1))
	})
}

func TestGaLoreNoAllocs(t *testing.T) {
	mxRunNoAllocs(t, "galore", func() (Solver, error) { return NewGaLore(Set("rank", 4), WithWeightDecay(0.1)) })
}

// mxLowRankBytes is the state formula of GaLore/Fira/FRUGAL for a rows×cols matrix of effective rank r
// in elements: projector (rows·r if rows ≤ cols, else cols·r) plus two moments of r·cols (resp. rows·r).
func mxLowRankBytes(rows, cols, r, elem int) int64 {
	if rows <= cols {
		return int64(elem * (rows*r + 2*r*cols))
	}
	return int64(elem * (cols*r + 2*rows*r))
}

// TestLowRankStateBytes checks StateBytes of GaLore, Fira and FRUGAL against their formulas, for a wide
// and a tall matrix, a vector (AdamW: 2P) and both dtypes.
func TestLowRankStateBytes(t *testing.T) {
	type shp struct{ rows, cols int }
	mats := []shp{{6, 20}, {24, 5}, {7, 7}}
	for _, kind := range []string{"galore", "fira", "frugal"} {
		for _, elem := range []int{4, 8} {
			var s Solver
			var err error
			switch kind {
			case "galore":
				s, err = NewGaLore(Set("rank", 3))
			case "fira":
				s, err = NewFira(Set("rank", 3))
			default:
				s, err = NewFRUGAL(Set("density", 0.5))
			}
			if err != nil {
				t.Fatal(err)
			}
			var ps []*Param
			want := int64(0)
			for i, m := range mats {
				n := m.rows * m.cols
				name := string(rune('a' + i))
				if elem == 4 {
					ps = append(ps, NewParamFrom(name, []int{m.rows, m.cols}, make([]float32, n)))
				} else {
					ps = append(ps, NewParamFrom(name, []int{m.rows, m.cols}, make([]float64, n)))
				}
				r := min(3, m.rows, m.cols)
				scalars := 0
				switch kind {
				case "fira":
					scalars = 2
				case "frugal":
					r = map[int]int{6: 3, 5: 2, 7: 4}[min(m.rows, m.cols)] // round half to even: 3, 2.5 → 2, 3.5 → 4
					scalars = 1
				}
				want += mxLowRankBytes(m.rows, m.cols, r, elem) + int64(8*scalars)
			}
			if elem == 4 {
				ps = append(ps, NewParamFrom("bias", []int{9}, make([]float32, 9)))
			} else {
				ps = append(ps, NewParamFrom("bias", []int{9}, make([]float64, 9)))
			}
			want += int64(2 * 9 * elem)
			if err := s.Step(Params(ps...)); err != nil {
				t.Fatal(err)
			}
			if got := s.StateBytes(); got != want {
				t.Errorf("%s (%d-byte elements): StateBytes = %d, want %d", kind, elem, got, want)
			}
		}
	}
}

// TestGaLoreProjectorOrthonormal: the projector sits on the smaller side (gradlab layout) and is
// orthonormal (PᵀP = I).
func TestGaLoreProjectorOrthonormal(t *testing.T) {
	for _, shape := range [][]int{{5, 9}, {9, 5}} {
		s, _ := NewGaLore(Set("rank", 3))
		n := shape[0] * shape[1]
		g := make([]float64, n)
		for i := range g {
			g[i] = float64((i*7)%11) - 5
		}
		p := NewParamFrom("w", shape, make([]float64, n))
		setGrad(p, g)
		if err := s.Step(Params(p)); err != nil {
			t.Fatal(err)
		}
		st := s.states["w"]
		P := st.ts[0].f64
		k, r := st.ts[0].shape[0], st.ts[0].shape[1]
		if want := min(shape[0], shape[1]); k != want || r != 3 {
			t.Fatalf("shape %v: projector %v, want [%d 3]", shape, st.ts[0].shape, want)
		}
		for a := 0; a < r; a++ {
			for b := 0; b < r; b++ {
				dot := 0.0
				for i := 0; i < k; i++ {
					dot += P[i*r+a] * P[i*r+b]
				}
				want := 0.0
				if a == b {
					want = 1
				}
				if d := dot - want; d > 1e-12 || d < -1e-12 {
					t.Fatalf("shape %v: PᵀP[%d,%d] = %v", shape, a, b, dot)
				}
			}
		}
		if s.RefreshCount() != 1 {
			t.Fatalf("refreshes = %d", s.RefreshCount())
		}
	}
}
