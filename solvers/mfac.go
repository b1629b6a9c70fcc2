package solvers

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// MFAC is M-FAC (Frantar, Kurtic & Alistarh, "M-FAC: Efficient Matrix-Free Approximations of
// Second-Order Information"), the optimizer of the authors' code IST-DASLab/M-FAC (optim.py, class MFAC
// with the dynamic algorithm HInvFastUpMulti). All parameters are flattened in the order given into one
// vector of length d; a ring buffer keeps the last m gradients g_1..g_m (starting as zeros, as in the
// reference), and the step is
//
//	g ← ∇L + λ_wd·θ                       (coupled weight decay, as the reference)
//	replace the oldest window row by g
//	u = F̂⁻¹g,  F̂ = damp·I + (1/m)Σ_i g_i g_iᵀ   (the damped windowed empirical Fisher)
//	u ← v = μv + (1−μ)u  when momentum μ > 0
//	θ ← θ − η·u
//
// The inverse-Hessian-vector product uses the Woodbury identity with the window stacked in G ∈ R^{m×d}:
// F̂⁻¹x = (x − Gᵀ(m·damp·I + GGᵀ)⁻¹Gx)/damp. The Gram matrix GGᵀ is updated in O(d·m) per step (one row
// and column) and the m×m system is solved by a Cholesky factorisation, O(m³) per step; the products
// with G and Gᵀ are O(d·m). Before the window first fills only its k filled rows enter the solve (O(k³)),
// and when d < k the d×d damped Fisher is solved instead. (The reference's dynamic algorithm reaches the same product with an O(m²)
// recursion after an O(m³) setup per update; the results are equal up to rounding.) The window and Gram
// matrix are kept in float64 for both parameter dtypes.
//
// Hyperparameters (defaults, the reference's): lr (1e-3), momentum (0), weight_decay (0), ngrads m
// (1024), damp (1e-5). A non-finite gradient refuses the step (or skips it with SkipNonFinite).
type MFAC struct {
	lrControl
	reg    registry
	names  []string
	shapes [][]int
	dtypes []tensor.Dtype
	d, m   int
	last   int       // ring-buffer index of the next row to replace
	filled int       // rows of the window holding gradients (rows 0..filled−1; the rest are zero)
	grads  []float64 // m×d window, row-major
	dots   []float64 // m×m Gram matrix GGᵀ
	mom    []float64 // momentum buffer (d), nil when momentum is 0
	// scratch
	g, u, gx, y, chol []float64
}

func init() {
	register("mfac", func(opts ...Option) (Solver, error) { return NewMFAC(opts...) })
}

// NewMFAC builds an M-FAC solver.
func NewMFAC(opts ...Option) (*MFAC, error) {
	c, err := newConfig("mfac", []hyperSpec{
		lrSpec(1e-3),
		{key: "momentum", def: 0, check: unitInterval},
		wdSpec(0),
		{key: "ngrads", def: 1024, check: positiveInt},
		{key: "damp", def: 1e-5, check: positive},
	}, opts)
	if err != nil {
		return nil, err
	}
	return &MFAC{lrControl: lrControl{cfg: c}}, nil
}

// StateBytes returns the bytes of the gradient window, the Gram matrix and the momentum buffer.
func (o *MFAC) StateBytes() int64 {
	return 8 * int64(len(o.grads)+len(o.dots)+len(o.mom))
}

// bind records the parameters at the first step and checks them afterwards.
func (o *MFAC) bind(views []view) error {
	if o.names == nil {
		n := 0
		names := make([]string, len(views))
		shapes := make([][]int, len(views))
		dts := make([]tensor.Dtype, len(views))
		for i := range views {
			names[i], shapes[i], dts[i] = views[i].name, append([]int(nil), views[i].shape...), views[i].dtype
			n += views[i].size()
		}
		m := int(o.cfg.f("ngrads"))
		o.names, o.shapes, o.dtypes, o.d, o.m = names, shapes, dts, n, m
		o.grads, o.dots = make([]float64, m*n), make([]float64, m*m)
		if o.cfg.f("momentum") > 0 {
			o.mom = make([]float64, n)
		}
		o.alloc()
		return nil
	}
	if len(views) != len(o.names) {
		return errors.Errorf("mfac: got %d parameters, the state is for %d (%v)", len(views), len(o.names), o.names)
	}
	for i := range views {
		if views[i].name != o.names[i] || !tensor.Shape(o.shapes[i]).Eq(views[i].shape) || views[i].dtype != o.dtypes[i] {
			return errors.Errorf("mfac: parameter %d is %q %v %v, the state is for %q %v %v (pass the same parameters in the same order)",
				i, views[i].name, views[i].shape, views[i].dtype, o.names[i], tensor.Shape(o.shapes[i]), o.dtypes[i])
		}
	}
	return nil
}

func (o *MFAC) alloc() {
	o.g, o.u, o.gx, o.y, o.chol = make([]float64, o.d), make([]float64, o.d), make([]float64, o.m), make([]float64, o.m), make([]float64, o.m*o.m)
}

// Step takes one M-FAC step with the gradients present in params.
func (o *MFAC) Step(params []G.ValueGrad) error {
	if len(params) == 0 {
		return errors.New("mfac: no parameters")
	}
	views, err := o.reg.resolve(params)
	if err != nil {
		return errors.Wrap(err, "mfac")
	}
	if o.names != nil {
		if err := o.bind(views); err != nil {
			return err
		}
	}
	if skip, err := o.reg.screen(views, o.cfg.nonFinite); skip || err != nil {
		return errors.Wrap(err, "mfac")
	}
	lr, err := o.stepLR()
	if err != nil {
		return err
	}
	if o.names == nil {
		if err := o.bind(views); err != nil {
			return err
		}
	}
	wd := o.cfg.f("weight_decay")
	off := 0
	for i := range views {
		v := &views[i]
		if v.g32 != nil {
			for j, x := range v.g32 {
				o.g[off+j] = float64(x) + wd*float64(v.w32[j])
			}
			off += len(v.g32)
		} else {
			for j, x := range v.g64 {
				o.g[off+j] = x + wd*v.w64[j]
			}
			off += len(v.g64)
		}
	}
	if err := o.updateMul(o.g, o.u); err != nil {
		return err
	}
	u := o.u
	if o.mom != nil {
		mu := o.cfg.f("momentum")
		for i := range o.mom {
			o.mom[i] = mu*o.mom[i] + (1-mu)*u[i]
		}
		u = o.mom
	}
	off = 0
	for i := range views {
		v := &views[i]
		if v.w32 != nil {
			for j := range v.w32 {
				v.w32[j] -= float32(lr * u[off+j])
			}
			off += len(v.w32)
		} else {
			for j := range v.w64 {
				v.w64[j] -= lr * u[off+j]
			}
			off += len(v.w64)
		}
		v.zeroGrad()
	}
	o.steps++
	return nil
}

// updateMul replaces the oldest window row by g and writes F̂⁻¹g into out.
func (o *MFAC) updateMul(g, out []float64) error {
	d, m, j := o.d, o.m, o.last
	copy(o.grads[j*d:(j+1)*d], g)
	o.filled = min(o.filled+1, m)
	for i := 0; i < m; i++ {
		s := curvDot(o.grads[i*d:(i+1)*d], g)
		o.dots[j*m+i], o.dots[i*m+j] = s, s
	}
	if err := o.ihvp(g, out); err != nil {
		// only reachable through rounding (A is positive definite for damp > 0); the row stays replaced
		return err
	}
	o.last = (j + 1) % m
	return nil
}

// IHVP writes F̂⁻¹x into out for the current window (x and out of the flattened length; M-FAC must have
// taken a step). It is the product the step uses.
func (o *MFAC) IHVP(x, out []float64) error {
	if o.names == nil {
		return errors.New("mfac: no window yet (take a step first)")
	}
	if len(x) != o.d || len(out) != o.d {
		return errors.Errorf("mfac: vectors must have length %d", o.d)
	}
	return o.ihvp(x, out)
}

// ihvp writes F̂⁻¹x into out. The window's zero rows (before it first fills) only add m·damp to the
// diagonal of the m×m system and get zero coefficients, so the system is solved on the k filled rows
// alone (bit for bit the same result, O(k³) instead of O(m³)); when the parameter dimension d is smaller
// than k, the d×d system F̂ = damp·I + (1/m)·GᵀG is solved instead (O(k·d² + d³)).
func (o *MFAC) ihvp(x, out []float64) error {
	if o.d < o.filled {
		return o.ihvpParamSpace(x, out)
	}
	d, m, k := o.d, o.m, o.filled
	damp := o.cfg.f("damp")
	// A = m·damp·I + GGᵀ on the filled rows (lower triangle in chol, row stride m)
	a := o.chol
	for i := 0; i < k; i++ {
		copy(a[i*m:i*m+i+1], o.dots[i*m:i*m+i+1])
		a[i*m+i] += float64(m) * damp
	}
	if err := cholFactor(a, m, k); err != nil {
		return errors.Wrap(err, "mfac: window Gram matrix")
	}
	for i := 0; i < k; i++ {
		o.gx[i] = curvDot(o.grads[i*d:(i+1)*d], x)
	}
	y := o.y
	cholSolve(a, m, k, o.gx, y)
	copy(out, x)
	for i := 0; i < k; i++ {
		row := o.grads[i*d : (i+1)*d]
		yi := y[i]
		if yi == 0 {
			continue
		}
		for t := range out {
			out[t] -= yi * row[t]
		}
	}
	inv := 1 / damp
	for t := range out {
		out[t] *= inv
	}
	return nil
}

// ihvpParamSpace solves (damp·I + (1/m)·GᵀG)·out = x directly, for d smaller than the filled window.
func (o *MFAC) ihvpParamSpace(x, out []float64) error {
	d, m, k := o.d, o.m, o.filled
	damp := o.cfg.f("damp")
	f := o.chol[:d*d]
	clear(f)
	for i := 0; i < k; i++ {
		row := o.grads[i*d : (i+1)*d]
		for r := 0; r < d; r++ {
			gr := row[r] / float64(m)
			for c := 0; c <= r; c++ {
				f[r*d+c] += gr * row[c]
			}
		}
	}
	for r := 0; r < d; r++ {
		f[r*d+r] += damp
	}
	if err := cholFactor(f, d, d); err != nil {
		return errors.Wrap(err, "mfac: damped Fisher")
	}
	cholSolve(f, d, d, x, out)
	return nil
}

// cholFactor overwrites the lower triangle of the leading n×n block of a (row stride `stride`) with its
// Cholesky factor L, A = LLᵀ. A non-positive pivot is an error.
func cholFactor(a []float64, stride, n int) error {
	for i := 0; i < n; i++ {
		for c := 0; c <= i; c++ {
			s := a[i*stride+c]
			for t := 0; t < c; t++ {
				s -= a[i*stride+t] * a[c*stride+t]
			}
			if i == c {
				if !(s > 0) {
					return errors.Errorf("not positive definite (pivot %g); increase damp", s)
				}
				a[i*stride+i] = math.Sqrt(s)
			} else {
				a[i*stride+c] = s / a[c*stride+c]
			}
		}
	}
	return nil
}

// cholSolve solves LLᵀx = b for the factor written by cholFactor (x may alias b).
func cholSolve(l []float64, stride, n int, b, x []float64) {
	for i := 0; i < n; i++ {
		s := b[i]
		for t := 0; t < i; t++ {
			s -= l[i*stride+t] * x[t]
		}
		x[i] = s / l[i*stride+i]
	}
	for i := n - 1; i >= 0; i-- {
		s := x[i]
		for t := i + 1; t < n; t++ {
			s -= l[t*stride+i] * x[t]
		}
		x[i] = s / l[i*stride+i]
	}
}

// Kind returns "mfac".
func (o *MFAC) Kind() string { return "mfac" }

func (o *MFAC) saveState(prefix string, w *stateWriter) error {
	if err := saveConfig(prefix, o.cfg, o.steps, w); err != nil {
		return err
	}
	dts := make([]string, len(o.dtypes))
	for i, dt := range o.dtypes {
		dts[i] = dt.Name()
	}
	if err := w.putMeta(prefix+"params", map[string]interface{}{"names": o.names, "shapes": o.shapes, "dtypes": dts, "last": o.last, "filled": o.filled}); err != nil {
		return err
	}
	if o.names == nil {
		return nil
	}
	for k, v := range map[string][]float64{"grads": o.grads, "dots": o.dots, "momentum": o.mom} {
		if v == nil {
			continue
		}
		if err := w.putTensor(prefix+"mfac."+k, stateTensor{dtype: tensor.Float64, shape: []int{len(v)}, f64: v}); err != nil {
			return err
		}
	}
	return nil
}

func (o *MFAC) loadState(prefix string, r *stateReader) (func(), error) {
	c, steps, err := loadConfig(prefix, o.cfg, r)
	if err != nil {
		return nil, err
	}
	var p struct {
		Names  []string `json:"names"`
		Shapes [][]int  `json:"shapes"`
		Dtypes []string `json:"dtypes"`
		Last   int      `json:"last"`
		Filled int      `json:"filled"`
	}
	if err := r.getMeta(prefix+"params", &p); err != nil {
		return nil, err
	}
	no := &MFAC{lrControl: lrControl{cfg: c, steps: steps}}
	if p.Names != nil {
		if len(p.Shapes) != len(p.Names) || len(p.Dtypes) != len(p.Names) {
			return nil, errors.New("mfac: parameter names, shapes and dtypes differ in number")
		}
		n := 0
		for i, s := range p.Shapes {
			dt, err := dtypeByName(p.Dtypes[i])
			if err != nil {
				return nil, err
			}
			no.dtypes = append(no.dtypes, dt)
			n += tensor.Shape(s).TotalSize()
		}
		m := int(c.f("ngrads"))
		if p.Last < 0 || p.Last >= m {
			return nil, errors.Errorf("mfac: ring index %d outside [0, %d)", p.Last, m)
		}
		if p.Filled < 0 || p.Filled > m {
			return nil, errors.Errorf("mfac: filled rows %d outside [0, %d]", p.Filled, m)
		}
		no.names, no.shapes, no.d, no.m, no.last, no.filled = p.Names, p.Shapes, n, m, p.Last, p.Filled
		get := func(k string, size int) ([]float64, error) {
			t, err := r.getTensor(prefix+"mfac."+k, tensor.Float64, []int{size})
			return t.f64, err
		}
		if no.grads, err = get("grads", m*n); err != nil {
			return nil, err
		}
		if no.dots, err = get("dots", m*m); err != nil {
			return nil, err
		}
		if c.f("momentum") > 0 {
			if no.mom, err = get("momentum", n); err != nil {
				return nil, err
			}
		}
		no.alloc()
	}
	return func() {
		*o.cfg = *c
		o.steps = no.steps
		o.names, o.shapes, o.dtypes, o.d, o.m, o.last, o.filled = no.names, no.shapes, no.dtypes, no.d, no.m, no.last, no.filled
		o.grads, o.dots, o.mom = no.grads, no.dots, no.mom
		o.g, o.u, o.gx, o.y, o.chol = no.g, no.u, no.gx, no.y, no.chol
	}, nil
}
