package config

import "strings"

// publicSuffixes are common domains under which anyone can register a name
// (ICANN second-level suffixes and hosting platforms that give each
// customer a subdomain): a wildcard origin directly under one admits every
// site registered there. The full Public Suffix List (publicsuffix.org)
// has thousands; this is the part people reach for. Single labels (com,
// io, dev) are refused without a list: every top-level domain is one.
const publicSuffixes = `
		co.uk org.uk me.uk ltd.uk plc.uk net.uk ac.uk gov.uk sch.uk
		com.au net.au org.au edu.au gov.au id.au asn.au
		co.nz net.nz org.nz ac.nz govt.nz
		co.jp ne.jp or.jp ac.jp go.jp gr.jp
		co.kr or.kr ne.kr re.kr
		com.cn net.cn org.cn gov.cn edu.cn
		com.hk net.hk org.hk com.tw net.tw org.tw idv.tw
		com.sg net.sg org.sg edu.sg com.my net.my org.my
		co.in net.in org.in firm.in gen.in ind.in
		co.id or.id web.id com.ph net.ph org.ph com.vn net.vn
		co.za org.za net.za web.za co.il org.il
		com.br net.br org.br com.mx org.mx com.ar net.ar org.ar
		com.co net.co com.pe com.uy com.ve com.ec
		com.tr net.tr org.tr com.ua net.ua org.ua com.pl net.pl org.pl
		com.es org.es com.pt com.gr com.cy co.at or.at
		com.ru net.ru org.ru com.eg com.sa com.ng com.pk
		eu.com us.com uk.com gb.net
		github.io gitlab.io bitbucket.io herokuapp.com herokudns.com
		vercel.app now.sh netlify.app netlify.com pages.dev workers.dev
		web.app firebaseapp.com appspot.com cloudfunctions.net run.app
		azurewebsites.net azurestaticapps.net cloudapp.net blob.core.windows.net
		cloudfront.net amazonaws.com s3.amazonaws.com elasticbeanstalk.com amplifyapp.com
		blogspot.com wordpress.com tumblr.com glitch.me repl.co replit.app
		onrender.com fly.dev railway.app up.railway.app deno.dev surge.sh
		ngrok.io ngrok.app ngrok-free.app trycloudflare.com
		codesandbox.io csb.app stackblitz.io webcontainer.io translate.goog
		googleusercontent.com myshopify.com
`

// publicSuffix reports whether a wildcard's remainder (the host after
// "*.") is one label or a known public suffix.
func publicSuffix(host string) bool {
	if !strings.Contains(host, ".") {
		return true
	}
	for _, s := range strings.Fields(publicSuffixes) {
		if s == host {
			return true
		}
	}
	return false
}
