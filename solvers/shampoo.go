package solvers

import (
	"math"
	"unsafe"

	"github.com/pkg/errors"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ---------------------------------------------------------------------------------------------------
// Shared core of the matrix-aware solvers (Shampoo, GaLore, Fira, FRUGAL).
//
// Their state is not parameter-shaped (preconditioners m×m and n×n, projectors m×r, moments r×n), so
// they do not use the generic Optimizer: mxSolver keeps, per parameter name, a list of named state
// tensors whose names and shapes are fixed by the algorithm from the parameter's shape (mxAlgo.layout),
// plus a step counter and a few float64 scalars. State files hold every tensor under
// "<param>.<tensor>" (safetensors), the rest in the metadata, and a load validates every name and
// shape against the layout before anything is swapped in.
// ---------------------------------------------------------------------------------------------------

// mxSpec declares one state tensor: its name, its shape, and its initial value (eye != 0: eye·I for a
// square matrix; otherwise zeros).
type mxSpec struct {
	name  string
	shape []int
	eye   float64
}

// mxTensor is one state tensor of a parameter, in the parameter's dtype.
type mxTensor struct {
	name  string
	shape []int
	f32   []float32
	f64   []float64
}

// mxState is the state of one parameter.
type mxState struct {
	name  string
	dtype tensor.Dtype
	shape []int
	step  int64
	scal  []float64
	ts    []mxTensor
}

func (s *mxState) bytes() int64 {
	n := int64(len(s.scal)) * 8
	for _, t := range s.ts {
		n += int64(len(t.f32))*4 + int64(len(t.f64))*8
	}
	return n
}

// mxAlgo is the per-parameter rule of a matrix-aware solver.
type mxAlgo interface {
	// layout lists the state tensors of a parameter of this shape.
	layout(shape []int) []mxSpec
	// scalars is the number of float64 scalars kept per parameter of this shape.
	scalars(shape []int) int
	// update32/update64 update one parameter (its state has just reached st.step ≥ 1) and zero its gradient.
	update32(v *view, st *mxState, lr, wd float64)
	update64(v *view, st *mxState, lr, wd float64)
}

// mxScratchTaker is implemented by algorithms that can adopt the scratch buffers of the algorithm they
// replace (after a state load), so the next step does not allocate.
type mxScratchTaker interface {
	takeScratch(old mxAlgo)
}

// mxSolver is the Solver shell shared by Shampoo, GaLore, Fira and FRUGAL.
type mxSolver struct {
	lrControl
	algo   mxAlgo
	build  func(c *config) (mxAlgo, error)
	reg    registry // view resolution and the non-finite screen only
	states map[string]*mxState
	order  []string
}

func newMxSolver(kind string, specs []hyperSpec, opts []Option, build func(c *config) (mxAlgo, error)) (*mxSolver, error) {
	c, err := newConfig(kind, specs, opts)
	if err != nil {
		return nil, err
	}
	a, err := build(c)
	if err != nil {
		return nil, errors.Wrap(err, kind)
	}
	s := &mxSolver{lrControl: lrControl{cfg: c}, algo: a, build: build, states: map[string]*mxState{}}
	s.reg.init()
	return s, nil
}

// resolve validates a step's parameters (names, tensors, shapes and dtypes against the state) and
// returns their views. Nothing is changed.
func (s *mxSolver) resolve(params []G.ValueGrad) ([]view, error) {
	views, err := s.reg.resolve(params)
	if err != nil {
		return nil, err
	}
	for i := range views {
		v := &views[i]
		if v.size() == 0 {
			return nil, errors.Errorf("parameter %q is empty", v.name)
		}
		if st, ok := s.states[v.name]; ok {
			if st.dtype != v.dtype {
				return nil, errors.Errorf("parameter %q changed dtype from %v to %v", v.name, st.dtype, v.dtype)
			}
			if !tensor.Shape(st.shape).Eq(v.shape) {
				return nil, errors.Errorf("parameter %q changed shape from %v to %v", v.name, tensor.Shape(st.shape), v.shape)
			}
		}
	}
	return views, nil
}

func (s *mxSolver) validate(params []G.ValueGrad) error {
	_, err := s.resolve(params)
	return errors.Wrap(err, s.cfg.kind)
}

// Step updates every parameter and zeroes the gradients. Everything is validated first: a refused step
// (bad tensors, duplicate names, a shape or dtype change, a non-finite gradient) changes nothing.
func (s *mxSolver) Step(params []G.ValueGrad) error {
	views, err := s.resolve(params)
	if err != nil {
		return errors.Wrap(err, s.cfg.kind)
	}
	if skip, err := s.reg.screen(views, s.cfg.nonFinite); skip || err != nil {
		return errors.Wrap(err, s.cfg.kind)
	}
	lr, err := s.stepLR()
	if err != nil {
		return err
	}
	wdAll, hasWD := s.cfg.vals["weight_decay"]
	for i := range views {
		v := &views[i]
		st := s.states[v.name]
		if st == nil {
			st = s.newState(v)
			s.states[v.name] = st
			s.order = append(s.order, v.name)
		}
		st.step++
		wd := 0.0
		if hasWD && (s.cfg.mask == nil || s.cfg.mask(v.name, v.shape)) {
			wd = wdAll
		}
		if v.dtype == tensor.Float32 {
			s.algo.update32(v, st, lr, wd)
		} else {
			s.algo.update64(v, st, lr, wd)
		}
	}
	s.steps++
	return nil
}

func (s *mxSolver) newState(v *view) *mxState {
	st := &mxState{name: v.name, dtype: v.dtype, shape: append([]int(nil), v.shape...)}
	st.scal = make([]float64, s.algo.scalars(st.shape))
	for _, sp := range s.algo.layout(st.shape) {
		t := mxTensor{name: sp.name, shape: sp.shape}
		n := tensor.Shape(sp.shape).TotalSize()
		if len(sp.shape) == 0 {
			n = 0
		}
		if v.dtype == tensor.Float32 {
			t.f32 = make([]float32, n)
			if sp.eye != 0 {
				for i := 0; i < sp.shape[0]; i++ {
					t.f32[i*sp.shape[0]+i] = float32(sp.eye)
				}
			}
		} else {
			t.f64 = make([]float64, n)
			if sp.eye != 0 {
				for i := 0; i < sp.shape[0]; i++ {
					t.f64[i*sp.shape[0]+i] = sp.eye
				}
			}
		}
		st.ts = append(st.ts, t)
	}
	return st
}

// StateBytes returns the bytes of the optimizer state: every state tensor and per-parameter scalar.
func (s *mxSolver) StateBytes() int64 {
	var n int64
	for _, st := range s.states {
		n += st.bytes()
	}
	return n
}

// ParamStateBytes returns the state bytes of the named parameter (0 if it has no state yet).
func (s *mxSolver) ParamStateBytes(name string) int64 {
	if st, ok := s.states[name]; ok {
		return st.bytes()
	}
	return 0
}

// SkippedSteps returns how many steps were skipped for non-finite gradients under SkipNonFinite.
func (s *mxSolver) SkippedSteps() int64 { return s.reg.skipped }

// ParamStep returns the step counter of the named parameter (0 if it has no state).
func (s *mxSolver) ParamStep(name string) int64 {
	if st, ok := s.states[name]; ok {
		return st.step
	}
	return 0
}

// mxRecord is what the state file says about one parameter besides its tensors.
type mxRecord struct {
	Name    string    `json:"name"`
	Dtype   string    `json:"dtype"`
	Shape   []int     `json:"shape"`
	Step    int64     `json:"step"`
	Scal    []float64 `json:"scalars,omitempty"`
	Tensors []string  `json:"tensors"`
}

func (s *mxSolver) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, s.cfg, s.steps, w); err != nil {
		return err
	}
	recs := make([]mxRecord, 0, len(s.order))
	for _, name := range s.order {
		st := s.states[name]
		rec := mxRecord{Name: name, Dtype: st.dtype.Name(), Shape: st.shape, Step: st.step, Scal: st.scal}
		for _, t := range st.ts {
			rec.Tensors = append(rec.Tensors, t.name)
			if err := w.putTensor(prefix+name+"."+t.name, stateTensor{dtype: st.dtype, shape: t.shape, f32: t.f32, f64: t.f64}); err != nil {
				return err
			}
		}
		for _, x := range st.scal {
			if !isFinite(x) {
				return errors.Errorf("%s: parameter %q has a non-finite state scalar", s.cfg.kind, name)
			}
		}
		recs = append(recs, rec)
	}
	if err := w.putMeta(prefix+"params", recs); err != nil {
		return err
	}
	return w.putMeta(prefix+"skipped", s.reg.skipped)
}

func (s *mxSolver) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, s.cfg, r)
	if err != nil {
		return nil, err
	}
	algo, err := s.build(c)
	if err != nil {
		return nil, errors.Wrap(err, c.kind)
	}
	var recs []mxRecord
	if err := r.getMeta(prefix+"params", &recs); err != nil {
		return nil, err
	}
	var skipped int64
	if err := r.getMeta(prefix+"skipped", &skipped); err != nil {
		return nil, err
	}
	states := make(map[string]*mxState, len(recs))
	order := make([]string, 0, len(recs))
	for _, rec := range recs {
		if _, dup := states[rec.Name]; dup {
			return nil, errors.Errorf("parameter %q listed twice", rec.Name)
		}
		dt, err := dtypeByName(rec.Dtype)
		if err != nil {
			return nil, errors.Wrapf(err, "parameter %q", rec.Name)
		}
		if rec.Step < 0 {
			return nil, errors.Errorf("parameter %q has negative step %d", rec.Name, rec.Step)
		}
		if len(rec.Shape) == 0 {
			return nil, errors.Errorf("parameter %q has no shape", rec.Name)
		}
		for _, d := range rec.Shape {
			if d <= 0 {
				return nil, errors.Errorf("parameter %q has shape %v", rec.Name, rec.Shape)
			}
		}
		if want := algo.scalars(rec.Shape); len(rec.Scal) != want {
			return nil, errors.Errorf("%s: parameter %q has %d state scalars, want %d", c.kind, rec.Name, len(rec.Scal), want)
		}
		specs := algo.layout(rec.Shape)
		if len(specs) != len(rec.Tensors) {
			return nil, errors.Errorf("%s: parameter %q has state tensors %v, this solver keeps %d", c.kind, rec.Name, rec.Tensors, len(specs))
		}
		st := &mxState{name: rec.Name, dtype: dt, shape: rec.Shape, step: rec.Step, scal: rec.Scal}
		if st.scal == nil {
			st.scal = []float64{}
		}
		for i, sp := range specs {
			if rec.Tensors[i] != sp.name {
				return nil, errors.Errorf("%s: parameter %q: state tensor %d is %q, want %q", c.kind, rec.Name, i, rec.Tensors[i], sp.name)
			}
			t, err := r.getTensor(prefix+rec.Name+"."+sp.name, dt, sp.shape)
			if err != nil {
				return nil, err
			}
			st.ts = append(st.ts, mxTensor{name: sp.name, shape: sp.shape, f32: t.f32, f64: t.f64})
		}
		states[rec.Name] = st
		order = append(order, rec.Name)
	}
	return func() {
		*s.cfg = *c
		if tk, ok := algo.(mxScratchTaker); ok {
			tk.takeScratch(s.algo)
		}
		s.algo = algo
		s.steps = steps
		s.states, s.order, s.reg.skipped = states, order, skipped
	}, nil
}

// mxMatrixDims returns the matrix view (rows, cols) of a parameter of ≥ 2 dimensions: the leading axes
// flattened into rows, the last axis (gradlab's output units) as columns.
func mxMatrixDims(shape []int) (rows, cols int) {
	cols = shape[len(shape)-1]
	rows = 1
	for _, d := range shape[:len(shape)-1] {
		rows *= d
	}
	return rows, cols
}

func mxIs32[T Float]() bool { var z T; return unsafe.Sizeof(z) == 4 }

func mxCast[U, T Float](x []T) []U {
	return unsafe.Slice((*U)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}

// mxTile is the side of the output tiles mxGemm splits a product into: gonum's native [SD]gemm runs
// serially (and allocates nothing) on outputs of one 64×64 block, and starts worker goroutines above.
const mxTile = 64

// mxGemm computes C = alpha·op(A)·op(B) + beta·C (row-major, op(X) = Xᵀ when the flag is set; C is m×n,
// the inner dimension k) through gonum's BLAS, tile by tile so that no call allocates.
func mxGemm[T Float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	ta, tb := blas.NoTrans, blas.NoTrans
	if tA {
		ta = blas.Trans
	}
	if tB {
		tb = blas.Trans
	}
	for i0 := 0; i0 < m; i0 += mxTile {
		mi := min(mxTile, m-i0)
		aOff := i0 * lda
		if tA {
			aOff = i0
		}
		for j0 := 0; j0 < n; j0 += mxTile {
			nj := min(mxTile, n-j0)
			bOff := j0
			if tB {
				bOff = j0 * ldb
			}
			cs := c[i0*ldc+j0:]
			if k == 0 {
				for i := 0; i < mi; i++ {
					row := cs[i*ldc : i*ldc+nj]
					for j := range row {
						row[j] *= beta
					}
				}
				continue
			}
			if mxIs32[T]() {
				blas32.Implementation().Sgemm(ta, tb, mi, nj, k, float32(alpha), mxCast[float32](a[aOff:]), lda,
					mxCast[float32](b[bOff:]), ldb, float32(beta), mxCast[float32](cs), ldc)
			} else {
				blas64.Implementation().Dgemm(ta, tb, mi, nj, k, float64(alpha), mxCast[float64](a[aOff:]), lda,
					mxCast[float64](b[bOff:]), ldb, float64(beta), mxCast[float64](cs), ldc)
			}
		}
	}
}

func mxSign[T Float](x T) T {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// ---------------------------------------------------------------------------------------------------
// Shampoo
// ---------------------------------------------------------------------------------------------------

// Grafting types of Shampoo (hyperparameter "graft_type").
const (
	ShampooGraftNone    = 0 // no grafting: the Shampoo direction with its own norm
	ShampooGraftSGD     = 1 // the step norm of SGD (‖g‖), the reference's default
	ShampooGraftAdaGrad = 2 // the step norm of AdaGrad (‖g/(√Σg² + diagonal_eps)‖)
	ShampooGraftAdam    = 3 // the step norm of Adam's RMS normalisation (‖g/(√v̂ + diagonal_eps)‖, v EMA with graft_beta2)
)

// Shampoo is the Shampoo solver; see NewShampoo.
type Shampoo struct{ *mxSolver }

// NewShampoo returns Shampoo (Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic Tensor
// Optimization", Algorithm 1 for matrices; the practical form of Anil, Gupta, Koren, Regan & Singer,
// "Scalable Second Order Optimization for Deep Learning"), following the authors' PyTorch reference
// google-research/google-research scalable_shampoo/pytorch/shampoo.py (+ matrix_functions.py). For a
// matrix gradient G (m×n; a tensor of ≥ 3 axes is viewed as prod(leading axes) × last axis), at the
// parameter's step t:
//
//	L ← β2·L + w·G·Gᵀ;   R ← β2·R + w·Gᵀ·G          (w = 1 if β2 = 1: the paper's sums, else 1 − β2)
//	every update_freq steps (and at t = 1):  L⁻¼ = (L + ε·λmax(L)·I)^(−1/4), R⁻¼ likewise
//	S = L⁻¼ · G · R⁻¼                                  (the paper's exponent −1/(2k) = −1/4 for k = 2)
//	vectors (k = 1): d ← β2·d + w·g²;  S = g / (√d + diagonal_eps)     (diagonal, AdaGrad-like)
//	grafting: S ← S · ‖D‖/(‖S‖ + 1e-16), D the graft direction (graft_type)
//	S ← S + wd·θ                                       (coupled decay, as the reference)
//	M ← μ·M + S;  U = μ·M + S if nesterov else M;  θ ← θ − η·U
//
// L and R start at ε·I (the paper's εI; the reference's matrix_eps·I) and the inverse roots at I. The
// roots are computed by a symmetric eigendecomposition (gonum mat.EigenSym, in float64) instead of the
// reference's coupled Newton iteration; the ridge is the reference's ε·λmax (relative damping).
// Eigenvalues below 0 (round-off) are clipped to 0. Grafting rescales the layer's whole step to the
// norm of the grafted method's step ("layer-wise grafting", Agarwal et al., "Disentangling Adaptive
// Gradient Methods from Learning Rates"); for ShampooGraftAdam the graft keeps an EMA v of g² with
// graft_beta2 and bias-corrects it.
//
// Differences from the reference, on purpose: no block partitioning (block_size) or small-dimension
// merging — each matrix gets one L and one R; the preconditioners are also computed at each parameter's
// first step (the reference starts from the identity and first computes them at step update_freq);
// vectors use the diagonal preconditioner above (the reference grafts the raw gradient); statistics are
// gathered every step (statistics_compute_steps = 1, start_preconditioning_step = 1).
//
// Layout: L acts on the rows and R on the columns of the stored matrix. gradlab stores W as (in, out), so
// L is the input-side factor (in×in) and R the output-side one (out×out): the transpose of PyTorch's
// (out, in) layout, where L is out×out. Shampoo is symmetric under transposition (the update of Wᵀ is
// the transpose of the update of W), so the result is the same.
//
// Hyperparameters (defaults, the reference's): lr (1), momentum (0.9), nesterov (true), beta2 (1: sums;
// must be in (0, 1]), eps (1e-12: matrix_eps), diagonal_eps (1e-6), weight_decay (0), update_freq (1:
// preconditioning_compute_steps), graft_type (1: SGD; 0 none, 2 AdaGrad, 3 Adam), graft_beta2 (0.999).
//
// State per m×n matrix: L and R (m² + n²), their inverse roots (m² + n²), the momentum (mn), and the
// graft accumulator (mn) for AdaGrad/Adam grafting; per vector of n: momentum, diagonal statistics and
// the graft accumulator. Steps between refreshes allocate nothing; a refresh allocates the float64
// work matrices of the eigendecomposition.
func NewShampoo(opts ...Option) (*Shampoo, error) {
	s, err := newMxSolver("shampoo", []hyperSpec{
		lrSpec(1),
		betaSpec("momentum", 0.9),
		flagSpec("nesterov", true),
		{key: "beta2", def: 1, check: func(v float64) error {
			if v <= 0 || v > 1 {
				return errors.New("must be in (0, 1]")
			}
			return nil
		}},
		epsSpec(1e-12),
		{key: "diagonal_eps", def: 1e-6, check: nonNegative},
		wdSpec(0),
		{key: "update_freq", def: 1, check: positiveInt},
		{key: "graft_type", def: ShampooGraftSGD, check: func(v float64) error {
			if v != ShampooGraftNone && v != ShampooGraftSGD && v != ShampooGraftAdaGrad && v != ShampooGraftAdam {
				return errors.New("must be 0 (none), 1 (SGD), 2 (AdaGrad) or 3 (Adam)")
			}
			return nil
		}},
		betaSpec("graft_beta2", 0.999),
	}, opts, newShampooAlgo)
	if err != nil {
		return nil, err
	}
	return &Shampoo{s}, nil
}

func init() {
	register("shampoo", func(opts ...Option) (Solver, error) { return NewShampoo(opts...) })
}

// RefreshCount returns how many preconditioner refreshes (eigendecompositions of L and R) the solver
// has computed since it was built.
func (s *Shampoo) RefreshCount() int64 { return s.algo.(*shampooAlgo).refreshes }

type shampooAlgo struct {
	mu, beta2, eps, diagEps, graftB2 float64
	nesterov                         bool
	freq                             int64
	graft                            int
	refreshes                        int64
	s32                              shampooScratch[float32]
	s64                              shampooScratch[float64]
}

type shampooScratch[T Float] struct{ tmp, u []T }

func newShampooAlgo(c *config) (mxAlgo, error) {
	return &shampooAlgo{mu: c.f("momentum"), beta2: c.f("beta2"), eps: c.f("eps"), diagEps: c.f("diagonal_eps"),
		graftB2: c.f("graft_beta2"), nesterov: c.b("nesterov"), freq: int64(c.f("update_freq")), graft: int(c.f("graft_type"))}, nil
}

func (a *shampooAlgo) takeScratch(old mxAlgo) {
	if o, ok := old.(*shampooAlgo); ok {
		a.s32, a.s64, a.refreshes = o.s32, o.s64, o.refreshes
	}
}

func (a *shampooAlgo) hasGraftAcc() bool {
	return a.graft == ShampooGraftAdaGrad || a.graft == ShampooGraftAdam
}

// Tensor order: momentum, [L, R, L_inv_root, R_inv_root | diag_acc], [graft_acc].
func (a *shampooAlgo) layout(shape []int) []mxSpec {
	specs := []mxSpec{{name: "momentum", shape: shape}}
	if len(shape) >= 2 {
		m, n := mxMatrixDims(shape)
		specs = append(specs,
			mxSpec{name: "L", shape: []int{m, m}, eye: a.eps},
			mxSpec{name: "R", shape: []int{n, n}, eye: a.eps},
			mxSpec{name: "L_inv_root", shape: []int{m, m}, eye: 1},
			mxSpec{name: "R_inv_root", shape: []int{n, n}, eye: 1})
	} else {
		specs = append(specs, mxSpec{name: "diag_acc", shape: shape})
	}
	if a.hasGraftAcc() {
		specs = append(specs, mxSpec{name: "graft_acc", shape: shape})
	}
	return specs
}

func (a *shampooAlgo) scalars([]int) int { return 0 }

func (a *shampooAlgo) update32(v *view, st *mxState, lr, wd float64) {
	shampooUpdate(a, &a.s32, v.w32, v.g32, v.shape, st, func(t *mxTensor) []float32 { return t.f32 }, lr, wd)
}

func (a *shampooAlgo) update64(v *view, st *mxState, lr, wd float64) {
	shampooUpdate(a, &a.s64, v.w64, v.g64, v.shape, st, func(t *mxTensor) []float64 { return t.f64 }, lr, wd)
}

func shampooUpdate[T Float](a *shampooAlgo, sc *shampooScratch[T], p, g []T, shape []int, st *mxState, data func(*mxTensor) []T, lr, wd float64) {
	n := len(p)
	sc.u = growSlice(sc.u, n)
	u := sc.u[:n]
	mom := data(&st.ts[0])
	w1 := a.beta2
	w2 := 1.0
	if w1 != 1 {
		w2 = 1 - w1
	}
	// graft accumulator (before the statistics, as the reference)
	var gacc []T
	if a.hasGraftAcc() {
		gacc = data(&st.ts[len(st.ts)-1])
		if a.graft == ShampooGraftAdaGrad {
			for i, x := range g {
				gacc[i] += x * x
			}
		} else {
			b2, omb2 := T(a.graftB2), T(1-a.graftB2)
			for i, x := range g {
				gacc[i] = b2*gacc[i] + omb2*x*x
			}
		}
	}
	if len(shape) >= 2 {
		rows, cols := mxMatrixDims(shape)
		L, R := data(&st.ts[1]), data(&st.ts[2])
		Li, Ri := data(&st.ts[3]), data(&st.ts[4])
		// L ← w1·L + w2·G·Gᵀ;  R ← w1·R + w2·Gᵀ·G
		mxGemm(false, true, rows, rows, cols, T(w2), g, cols, g, cols, T(w1), L, rows)
		mxGemm(true, false, cols, cols, rows, T(w2), g, cols, g, cols, T(w1), R, cols)
		if st.step == 1 || st.step%a.freq == 0 {
			shampooInvRoot(L, Li, rows, a.eps)
			shampooInvRoot(R, Ri, cols, a.eps)
			a.refreshes++
		}
		sc.tmp = growSlice(sc.tmp, n)
		tmp := sc.tmp[:n]
		mxGemm(false, false, rows, cols, rows, 1, Li, rows, g, cols, 0, tmp, cols)
		mxGemm(false, false, rows, cols, cols, 1, tmp, cols, Ri, cols, 0, u, cols)
	} else {
		d := data(&st.ts[1])
		W1, W2, de := T(w1), T(w2), T(a.diagEps)
		for i, x := range g {
			d[i] = W1*d[i] + W2*x*x
			u[i] = x / (T(math.Sqrt(float64(d[i]))) + de)
		}
	}
	if a.graft != ShampooGraftNone {
		gn := 0.0
		switch a.graft {
		case ShampooGraftSGD:
			gn = sumSquares(g)
		case ShampooGraftAdaGrad:
			for i, x := range g {
				q := float64(x) / (math.Sqrt(float64(gacc[i])) + a.diagEps)
				gn += q * q
			}
		case ShampooGraftAdam:
			bc2 := 1 - math.Pow(a.graftB2, float64(st.step))
			for i, x := range g {
				q := float64(x) / (math.Sqrt(float64(gacc[i])/bc2) + a.diagEps)
				gn += q * q
			}
		}
		scale := T(math.Sqrt(gn) / (math.Sqrt(sumSquares(u)) + 1e-16))
		for i := range u {
			u[i] *= scale
		}
	}
	mu, wdT, lrT := T(a.mu), T(wd), T(lr)
	for i := range p {
		s := u[i]
		if wd != 0 {
			s += wdT * p[i]
		}
		m := mu*mom[i] + s
		mom[i] = m
		if a.nesterov {
			m = mu*m + s
		}
		p[i] -= lrT * m
		g[i] = 0
	}
}

// shampooInvRoot writes (S + eps·λmax·I)^(−1/4) of the symmetric n×n matrix S into dst, through a
// float64 symmetric eigendecomposition (allocates its work matrices).
func shampooInvRoot[T Float](S, dst []T, n int, eps float64) {
	sym := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			sym.SetSym(i, j, 0.5*(float64(S[i*n+j])+float64(S[j*n+i])))
		}
	}
	var es mat.EigenSym
	if !es.Factorize(sym, true) {
		return // keep the previous inverse root (the decomposition did not converge)
	}
	vals := es.Values(nil)
	var q mat.Dense
	es.VectorsTo(&q)
	lmax := 0.0
	for _, l := range vals {
		lmax = max(lmax, l)
	}
	ridge := eps * lmax
	d := make([]float64, n)
	for i, l := range vals {
		x := max(l, 0) + ridge
		if x > 0 {
			d[i] = math.Pow(x, -0.25)
		}
	}
	// dst = (Q·diag(d))·Qᵀ through BLAS
	b := mat.DenseCopyOf(&q)
	for i := 0; i < n; i++ {
		row := b.RawRowView(i)
		for k := range row {
			row[k] *= d[k]
		}
	}
	var res mat.Dense
	res.Mul(b, q.T())
	for i := 0; i < n; i++ {
		for j, x := range res.RawRowView(i) {
			dst[i*n+j] = T(x)
		}
	}
}
