/** Anything a terminal acts on, apart from the line break: C0, DEL, C1, line/paragraph separators, bidi controls. */
export const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
