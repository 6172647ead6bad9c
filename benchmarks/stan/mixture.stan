// Mixture of K linear regressions with Dirichlet weights (bayesmoe's MixtureRegression with
// its default priors; the assignments summed out).
data {
  int<lower=1> n;
  int<lower=1> p;
  int<lower=1> K;
  matrix[n, p] X;
  vector[n] y;
  real m0;
  real<lower=0> s0;
  real<lower=0> s_y;
  real<lower=0> alpha;
}
parameters {
  vector[K] intercept;
  real<lower=0> tau_base;
  matrix[K, p] beta;
  vector<lower=0>[K] sigma;
  simplex[K] weights;
}
model {
  intercept ~ normal(m0, s0);
  tau_base ~ cauchy(0, s_y);
  to_vector(beta) ~ normal(0, tau_base);
  sigma ~ normal(0, s_y);
  weights ~ dirichlet(rep_vector(alpha, K));
  {
    matrix[n, K] mu = X * beta' + rep_matrix(intercept', n);
    vector[K] log_w = log(weights);
    for (i in 1:n) {
      vector[K] lp = log_w;
      for (k in 1:K) lp[k] += normal_lpdf(y[i] | mu[i, k], sigma[k]);
      target += log_sum_exp(lp);
    }
  }
}
