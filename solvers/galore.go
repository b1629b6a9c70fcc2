package solvers

import (
	"math"

	"github.com/pkg/errors"
	"gonum.org/v1/gonum/mat"
)

// Low-rank gradient projection shared by GaLore, Fira and FRUGAL.
//
// The references (jiaweizzhao/GaLore galore_torch/galore_projector.py, proj_type 'std'; Fira's
// gradient_projection.py and FRUGAL's galore_projector.py are the same code) work on PyTorch's
// Linear.weight, stored (out, in). For an m×n PyTorch gradient they project from the right,
// R = G·Bᵀ with B = Vh[:r] (r×n), when m ≥ n, and from the left, R = Aᵀ·G with A = U[:, :r] (m×r),
// when m < n: the smaller side is reduced, the moments are r×n or m×r.
//
// gradlab stores W as (in, out), the transpose: a gradlab gradient G (rows = in, cols = out) is the
// PyTorch gradient transposed, and the SVD of Gᵀ swaps U and V. PyTorch's right projection of Gᵀ is
// therefore a LEFT projection of G by its own leading left singular vectors, and vice versa:
//
//	rows ≤ cols (PyTorch m ≥ n):  P = U[:, :r] (rows×r),  R = Pᵀ·G (r×cols),  back: P·N
//	rows > cols (PyTorch m < n):  Q = V[:, :r] (cols×r),  R = G·Q (rows×r),   back: N·Qᵀ
//
// which is the reference's rule on the transposed matrix, so the update of a gradlab weight is the
// transpose of the reference's update of the PyTorch weight (the moments are the transposes too; the
// projector is stored as a column basis in both cases). Only the tie rows = cols depends on the layout
// (the reference projects from the right, so gradlab projects from the left); with the flag
// "channel_first" (weights stored (out, in) like PyTorch) the reference's rule applies unchanged:
// left iff rows < cols. The effective rank is min(rank, rows, cols), as the reference's slicing gives.

// lowRankLeft reports whether a rows×cols gradient is projected from the left (see above).
func lowRankLeft(rows, cols int, channelFirst bool) bool {
	if channelFirst {
		return rows < cols
	}
	return rows <= cols
}

// lowRankShapes returns the projector's and the low-rank gradient's shapes.
func lowRankShapes(rows, cols, r int, left bool) (proj, low []int) {
	if left {
		return []int{rows, r}, []int{r, cols}
	}
	return []int{cols, r}, []int{rows, r}
}

// lowRankRefresh sets P to the r leading singular vectors of the side being projected, from a thin SVD
// of g (gonum mat.SVD in float64; allocates).
func lowRankRefresh[T Float](g []T, rows, cols, r int, left bool, P []T) error {
	if r == 0 {
		return nil
	}
	d := mat.NewDense(rows, cols, nil)
	for i := 0; i < rows; i++ {
		row := d.RawRowView(i)
		for j := range row {
			row[j] = float64(g[i*cols+j])
		}
	}
	var svd mat.SVD
	if !svd.Factorize(d, mat.SVDThin) {
		return errors.New("SVD did not converge")
	}
	var b mat.Dense
	n := cols
	if left {
		svd.UTo(&b)
		n = rows
	} else {
		svd.VTo(&b)
	}
	for i := 0; i < n; i++ {
		for c := 0; c < r; c++ {
			P[i*r+c] = T(b.At(i, c))
		}
	}
	return nil
}

// lowRankProject computes the low-rank gradient R of g (left: Pᵀ·g; right: g·Q).
func lowRankProject[T Float](P, g, R []T, rows, cols, r int, left bool) {
	if left {
		mxGemm(true, false, r, cols, rows, 1, P, r, g, cols, 0, R, cols)
	} else {
		mxGemm(false, false, rows, r, cols, 1, g, cols, P, r, 0, R, r)
	}
}

// lowRankBack computes F = alpha·(P·N or N·Qᵀ) + beta·F.
func lowRankBack[T Float](P, N, F []T, rows, cols, r int, left bool, alpha, beta T) {
	if left {
		mxGemm(false, false, rows, cols, r, alpha, P, r, N, cols, beta, F, cols)
	} else {
		mxGemm(false, true, rows, cols, r, alpha, N, r, P, r, beta, F, cols)
	}
}

// GaLore is GaLore (and Fira, which shares its state); see NewGaLore and NewFira.
type GaLore struct{ *mxSolver }

// NewGaLore returns GaLore (Zhao, Zhang, Chen, Wang, Anandkumar & Tian, "GaLore: Memory-Efficient LLM
// Training by Gradient Low-Rank Projection"), following the authors' code jiaweizzhao/GaLore
// (galore_torch/galore_projector.py, proj_type 'std', and galore_torch/adamw.py). For a 2-D parameter
// with gradient G at its step t (from 1):
//
//	if (t−1) mod update_proj_gap = 0:  P ← top-rank singular vectors of G (truncated SVD, see the layout
//	                                    note above: the smaller side of G is projected)
//	R = Pᵀ·G  (or G·Q)
//	m ← β1·m + (1−β1)·R;  v ← β2·v + (1−β2)·R²;  N = m/(√v + ε)
//	θ ← θ − η·(√(1−β2ᵗ)/(1−β1ᵗ))·scale·(P·N  or  N·Qᵀ)
//	θ ← θ − η·λ·θ                                   (decoupled decay after the update, as the reference)
//
// The moments are not reset when the projector changes (the reference keeps them). Parameters that are
// not 2-D get the same AdamW without projection (the reference's galore_torch AdamW on a parameter
// without "rank").
//
// Hyperparameters (defaults): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-6, the reference's AdamW),
// weight_decay (0), rank (128), update_proj_gap (200), scale (0.25, the README's galore_scale; the
// projector's own default is 1), channel_first (false: gradlab's (in, out) layout).
//
// State per rows×cols matrix with r = min(rank, rows, cols): the projector (rows·r when rows ≤ cols,
// else cols·r) and two moments of r·cols (resp. rows·r), in the parameter's dtype; 2P for other
// parameters. Steps without a projector refresh allocate nothing; a refresh allocates the SVD's work.
func NewGaLore(opts ...Option) (*GaLore, error) {
	s, err := newMxSolver("galore", galoreSpecs(1e-6, 0.25), opts, func(c *config) (mxAlgo, error) { return newGaloreAlgo(c, false), nil })
	if err != nil {
		return nil, err
	}
	return &GaLore{s}, nil
}

func galoreSpecs(eps, scale float64) []hyperSpec {
	return []hyperSpec{
		lrSpec(1e-3),
		betaSpec("beta1", 0.9),
		betaSpec("beta2", 0.999),
		epsSpec(eps),
		wdSpec(0),
		{key: "rank", def: 128, check: positiveInt},
		{key: "update_proj_gap", def: 200, check: positiveInt},
		{key: "scale", def: scale, check: nonNegative},
		flagSpec("channel_first", false),
	}
}

func init() {
	register("galore", func(opts ...Option) (Solver, error) { return NewGaLore(opts...) })
}

// RefreshCount returns how many projectors (SVDs) the solver has computed since it was built.
func (s *GaLore) RefreshCount() int64 { return s.algo.(*galoreAlgo).refreshes }

// galoreAlgo is the rule of GaLore and Fira.
type galoreAlgo struct {
	fira               bool
	b1, b2, eps, scale float64
	rank, gap          int
	channelFirst       bool
	refreshes          int64
	s32                galoreScratch[float32]
	s64                galoreScratch[float64]
}

type galoreScratch[T Float] struct{ low, n, full, sub, phi []T }

func newGaloreAlgo(c *config, fira bool) *galoreAlgo {
	return &galoreAlgo{fira: fira, b1: c.f("beta1"), b2: c.f("beta2"), eps: c.f("eps"), scale: c.f("scale"),
		rank: int(c.f("rank")), gap: int(c.f("update_proj_gap")), channelFirst: c.b("channel_first")}
}

func (a *galoreAlgo) takeScratch(old mxAlgo) {
	if o, ok := old.(*galoreAlgo); ok {
		a.s32, a.s64, a.refreshes = o.s32, o.s64, o.refreshes
	}
}

// galoreLayout is the state of a GaLore-projected matrix of rank r, or the AdamW moments of anything else.
func galoreLayout(shape []int, r int, channelFirst bool) []mxSpec {
	if len(shape) != 2 {
		return []mxSpec{{name: "exp_avg", shape: shape}, {name: "exp_avg_sq", shape: shape}}
	}
	left := lowRankLeft(shape[0], shape[1], channelFirst)
	ps, ls := lowRankShapes(shape[0], shape[1], r, left)
	return []mxSpec{{name: "projector", shape: ps}, {name: "exp_avg", shape: ls}, {name: "exp_avg_sq", shape: ls}}
}

func (a *galoreAlgo) effRank(shape []int) int { return min(a.rank, shape[0], shape[1]) }

func (a *galoreAlgo) layout(shape []int) []mxSpec {
	r := 0
	if len(shape) == 2 {
		r = a.effRank(shape)
	}
	return galoreLayout(shape, r, a.channelFirst)
}

// scalars: Fira keeps the previous norm of its scaled residual and whether there is one.
func (a *galoreAlgo) scalars(shape []int) int {
	if a.fira && len(shape) == 2 {
		return 2
	}
	return 0
}

func (a *galoreAlgo) update32(v *view, st *mxState, lr, wd float64) {
	galoreUpdate(a, &a.s32, v.w32, v.g32, v.shape, st, func(t *mxTensor) []float32 { return t.f32 }, lr, wd)
}

func (a *galoreAlgo) update64(v *view, st *mxState, lr, wd float64) {
	galoreUpdate(a, &a.s64, v.w64, v.g64, v.shape, st, func(t *mxTensor) []float64 { return t.f64 }, lr, wd)
}

// galoreAdam updates the moments with x and writes N = m/(√v + eps).
func galoreAdam[T Float](x, m, v, N []T, b1, b2, eps float64) {
	B1, O1, B2, O2, E := T(b1), T(1-b1), T(b2), T(1-b2), T(eps)
	for i, g := range x {
		mi := m[i]*B1 + O1*g
		vi := v[i]*B2 + O2*g*g
		m[i], v[i] = mi, vi
		N[i] = mi / (T(math.Sqrt(float64(vi))) + E)
	}
}

func galoreUpdate[T Float](a *galoreAlgo, sc *galoreScratch[T], p, g []T, shape []int, st *mxState, data func(*mxTensor) []T, lr, wd float64) {
	t := float64(st.step)
	stepSize := T(lr * math.Sqrt(1-math.Pow(a.b2, t)) / (1 - math.Pow(a.b1, t)))
	decay := T(-lr * wd)
	if len(shape) != 2 {
		m, v := data(&st.ts[0]), data(&st.ts[1])
		sc.n = growSlice(sc.n, len(p))
		N := sc.n[:len(p)]
		galoreAdam(g, m, v, N, a.b1, a.b2, a.eps)
		for i := range p {
			q := p[i] - stepSize*N[i]
			if wd != 0 {
				q += decay * q
			}
			p[i] = q
			g[i] = 0
		}
		return
	}
	rows, cols := shape[0], shape[1]
	r := a.effRank(shape)
	left := lowRankLeft(rows, cols, a.channelFirst)
	P, m, v := data(&st.ts[0]), data(&st.ts[1]), data(&st.ts[2])
	if (st.step-1)%int64(a.gap) == 0 {
		if err := lowRankRefresh(g, rows, cols, r, left, P); err == nil {
			a.refreshes++
		}
	}
	nl, n := len(m), len(p)
	sc.low, sc.n, sc.full = growSlice(sc.low, nl), growSlice(sc.n, nl), growSlice(sc.full, n)
	R, N, U := sc.low[:nl], sc.n[:nl], sc.full[:n]
	lowRankProject(P, g, R, rows, cols, r, left)
	galoreAdam(R, m, v, N, a.b1, a.b2, a.eps)
	lowRankBack(P, N, U, rows, cols, r, left, T(a.scale), 0)
	if a.fira {
		firaResidual(a, sc, g, P, R, N, U, rows, cols, r, left, st)
	}
	for i := range p {
		q := p[i] - stepSize*U[i]
		if wd != 0 {
			q += decay * q
		}
		p[i] = q
		g[i] = 0
	}
}
