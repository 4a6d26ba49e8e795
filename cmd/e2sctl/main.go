// Command e2sctl is the operators' tool: it talks to the supervisor's admin
// socket, which knows the caller by uid and allows each command only to the
// roles that hold its authorization. `e2sctl audit verify -log FILE -pubkey
// FILE` works offline on a copy of the audit log.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: e2sctl [-socket PATH] [-json] COMMAND [ARGS]

  whoami                                your uid and roles
  status                                compartments, pids, restarts      (operator)
  compartment start|stop|restart NAME                                    (operator)
  audit verify [-log FILE -pubkey FILE] prove the audit log whole; offline with -log (auditor)
  audit tail [-n N] [FILTERS]           newest records                    (auditor)
  audit search [FILTERS]                FILTERS: -log gate|admin -compartment C -decision allow|deny
                                        -user U -script S -reason R -req ID -since T -until T
  explain REASON-ID|REQ-ID              which rule, labels and filter decided
  policy show|check DIR|propose DIR|rollback                              (secadmin)
  policy shadow DIR|shadow-report|shadow-stop  the candidate beside the active set on live calls
  role list | role assign|revoke UID ROLE [-name NAME]  (secadmin; NAME: a check of the uid's account name)
  key show                              the merchant certificate, fingerprint, validity, where the key lives (keyadmin, auditor)
  key export-cert FILE|-                write the merchant certificate (PEM)   (keyadmin, auditor)
  key rotate                            a new merchant key; old signatures stay verifiable (keyadmin, two-person)
  proposals | approve ID | reject ID    the two-person rule

exit status: 0 done, 1 failed, 2 usage, 3 denied, 4 audit log not whole
`
