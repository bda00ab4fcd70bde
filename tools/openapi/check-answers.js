#!/usr/bin/env node
// tools/openapi/check-answers.js - do real answers match docs/openapi.yaml?
//
//   node tools/openapi/check-answers.js OPENAPI.json ANSWERS.jsonl
//
// OPENAPI.json is the description bundled to JSON (`redocly bundle --ext
// json`); each line of ANSWERS.jsonl is one answer a service gave:
// {"method", "path" (the path template, e.g. "/accounts/{id}"), "status",
// "content_type", "body"}. An answer passes when its operation is
// described, its status is listed among the operation's responses (not
// merely covered by `default`, which is for 500), its media type is the
// one described for that status (none for 304 and HEAD), and a JSON body
// validates against the described schema (JSON Schema 2020-12, the
// dialect of OpenAPI 3.1; formats are not checked). Prints one line per
// answer that does not pass and exits 1 if any; else prints the count.
'use strict';

const fs = require('fs');
const Ajv2020 = require('@redocly/ajv/dist/2020').default;

// One JSON pointer segment, as it goes in a URI fragment.
function seg(s) {
	return encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'));
}

function main(argv) {
	if (argv.length !== 2) {
		console.error('usage: check-answers.js OPENAPI.json ANSWERS.jsonl');
		return 2;
	}
	const doc = JSON.parse(fs.readFileSync(argv[0], 'utf8'));
	const lines = fs.readFileSync(argv[1], 'utf8').split('\n')
		.filter((l) => l.trim() !== '');
	const ajv = new Ajv2020({ strict: false, validateFormats: false,
		allErrors: true });
	ajv.addSchema(doc, 'openapi.json');
	const validators = new Map();
	let bad = 0;

	const deref = (obj) => {
		let seen = 0;
		while (obj && obj.$ref && seen++ < 10) {
			const ptr = obj.$ref.replace(/^#\//, '').split('/')
				.map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
			obj = ptr.reduce((o, k) => (o ? o[k] : undefined), doc);
		}
		return obj;
	};

	lines.forEach((line, i) => {
		const a = JSON.parse(line);
		const what = `${a.method} ${a.path} ${a.status}`;
		const problem = (msg) => {
			console.log(`answer ${i + 1} (${what}): ${msg}`);
			bad++;
		};
		const item = doc.paths && doc.paths[a.path];
		const method = a.method === 'HEAD' ? 'get' : a.method.toLowerCase();
		const op = item && item[method];
		if (!op) {
			problem('no such operation in the description');
			return;
		}
		const resp = deref(op.responses && op.responses[String(a.status)]);
		if (!resp) {
			problem(`status ${a.status} is not described; described: ` +
				Object.keys(op.responses || {}).join(', '));
			return;
		}
		const content = resp.content || {};
		const types = Object.keys(content);
		const body = a.body || '';
		if (a.method === 'HEAD' || a.status === 304) {
			if (body !== '')
				problem('a body where none is sent');
			return;
		}
		const ctype = (a.content_type || '').trim();
		if (!types.includes(ctype)) {
			problem(`Content-Type '${ctype}' is not described;` +
				` described: ${types.join(', ') || 'no content'}`);
			return;
		}
		if (!/json/.test(ctype))
			return;
		let value;
		try {
			value = JSON.parse(body);
		} catch (e) {
			problem(`body is not JSON: ${e.message}`);
			return;
		}
		const key = `${a.path} ${method} ${a.status} ${ctype}`;
		if (!validators.has(key)) {
			// validate against the schema where it stands, through
			// the response's $ref if it is one
			const r = op.responses[String(a.status)];
			const base = r.$ref ? r.$ref : '#' + ['paths', a.path,
				method, 'responses', String(a.status)]
				.map((p) => '/' + seg(p)).join('');
			const ref = `openapi.json${base}/content/${seg(ctype)}/schema`;
			validators.set(key, ajv.compile({ $ref: ref }));
		}
		const validate = validators.get(key);
		if (!validate(value))
			problem(ajv.errorsText(validate.errors, { dataVar: 'body' }));
	});
	if (bad)
		return 1;
	console.log(`${lines.length} answers match the description`);
	return 0;
}

process.exitCode = main(process.argv.slice(2));
