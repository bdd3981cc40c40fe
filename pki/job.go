package pki

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A job's credential (its workload identity): a client certificate of its
// owner that also names the job, as a URI SAN ssi:job:<gpid>. Agents admit
// it as that user for as long as the job runs (access checks the job's
// record at each request), an admin only for a job of root (which only
// admins start, and which is root on its node anyway), and it is
// short-lived: the agent running the job has it renewed well before
// JobLifetime ends.

// JobLifetime is how long a job's certificate is valid.
const JobLifetime = time.Hour

// jobScheme is the URI scheme of the SAN that names a job.
const jobScheme = "ssi"

// IssueJob signs a job's certificate for pub: user name's (admin: with
// O=ssi:admins), naming gpid, valid for JobLifetime unless v says otherwise.
func (ca *CA) IssueJob(pub crypto.PublicKey, name string, admin bool, gpid uint64, v Validity) (*x509.Certificate, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if gpid == 0 {
		return nil, fmt.Errorf("pki: a job certificate must name its job")
	}
	nb, na := v.window(JobLifetime)
	subj := pkix.Name{CommonName: name}
	if admin {
		subj.Organization = []string{OrgAdmins}
	}
	return ca.sign(&x509.Certificate{
		Subject: subj, NotBefore: nb, NotAfter: na,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{{Scheme: jobScheme, Opaque: "job:" + strconv.FormatUint(gpid, 10)}},
	}, pub)
}

// jobOf returns the gpid a certificate names (0: none), or an error for a
// job SAN that does not parse.
func jobOf(c *x509.Certificate) (uint64, error) {
	for _, u := range c.URIs {
		if u.Scheme != jobScheme {
			continue
		}
		s, ok := strings.CutPrefix(u.Opaque, "job:")
		g, err := strconv.ParseUint(s, 10, 64)
		if !ok || err != nil || g == 0 {
			return 0, fmt.Errorf("%w: job SAN %q", ErrBadIdentity, u.String())
		}
		return g, nil
	}
	return 0, nil
}
