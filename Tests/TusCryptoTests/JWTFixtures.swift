/// Generated once with Tests/interop/jwt_helpers.py and the openssl command line (keys below; private keys discarded).
enum JWTFixtures {
    static let secret = "0123456789abcdef0123456789abcdef-shared"
    static let hs = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYWxpY2UiLCAiZXhwIjogNDEwMjQ0NDgwMCwgIm1heF9zaXplIjogMTAwMH0.N8AHZZbaYmJta2yqWyMORvhVvyQpZdF2_lL2Qx8hTVk"
    static let hsExpired = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYWxpY2UiLCAiZXhwIjogMTcwMDAwMDAwMH0.e0FVucJ-M_b4lPkllEaY-208BgHlARwBoUCYJl9g-PU"
    static let hsNbf = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYWxpY2UiLCAibmJmIjogNDEwMjQ0NDAwMH0.1EP77DLAZp2kpG9Vm0ZHjD-lzIKliAqGn57p-T8nnCs"
    static let hsWrongKey = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYWxpY2UifQ.06AIVm8OvlcZI-VbhJ_23nFMXj1Qp3IAbXTjdYhKBuk"
    static let none = "eyJhbGciOiAibm9uZSIsICJ0eXAiOiAiSldUIn0.eyJzdWIiOiAiYWxpY2UifQ."
    static let rs = "eyJhbGciOiAiUlMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYm9iIiwgImV4cCI6IDQxMDI0NDQ4MDB9.ZPg45HBvgx8U1U1ltGZFLNXr_-32in5ywOkPsWkjJVP1ICBCBpLfZO0JnoplkTMRA5hi6BOra7D6vmKpAdChRwWqz6mmWAgKAmUCdgtPVzFTwRiYzlLkdVh2vKQOiaruV8Ws12FeVg1iKcI-QQEJB-dmxHnkM_wV138KzzH1wohVC7_r4yxDKc1U2tvOrPN_etUt-mbxOF_Kxmu_o-No01OK5WluyueGYt9uXrlV87CtjjUulSv9j-agzBekYjrJ7Mgy1jJOakS3oozMu10uqRJvPki2dyoUc1L-gUvXVy2QmUQPWc88kjZOzAwxnyVfiewMuehgkHuWSPvibzEg_g"
    static let es = "eyJhbGciOiAiRVMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiY2Fyb2wiLCAiZXhwIjogNDEwMjQ0NDgwMH0.XTJ0-YW1tgx_wGCH3LfUk80P4zJ7EGSbMC2KyQQdXkBiriJAza38M8E52N4193RkINc6DxC7eic40f4d088KVA"
    static let rsForEC = "eyJhbGciOiAiUlMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiY2Fyb2wifQ.aTGD9LzNPo3rTTpXVUASdaBRc9F7n31vAgPsiFvpc7MR7-eoHRK_C-4srV4cEzkxSwCQ5heT3rf7povyObX2I511kKcyas2RPCw_aNTwW5q2D0e_kgSqL-JS1FV-XWtnpW1i7OiiDhW-JbyGu8WaP44Lg3ci1pla8nD2Yn1rPiCgTnfBeNzGBp44YTmTakPMKEGpAOTpo4O_3Gk3vE_EFD96hGwRilGMUte_P7J1Qrd8upgLylEcXcjAOsLfACz0Mmxo6umVociG833vbWz00yFw2I70-Z5pD3ehs2ZvIYlpXlLgQTgSeM9IeHQnW8buqI0RqfBuhCw3BIZG7jZidg"
    static let confused = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAibWFsbG9yeSJ9.izroZpmmXTmc_zr5wwDrOIrjlRtMT3rKNPTHq-nQCbs"
    static let expText = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYWxpY2UiLCAiZXhwIjogIm5ldmVyIn0.O6IRQB9e7vKQjJbWEQNPWyzRrMOWokoZjxCwVksGPr0"
    static let rsaPublic = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAl1wQfKo2SkDTSvRCFuvv\nDZPM92xcsNNTBsdMbTmnB2gC0iH73vw6hANmIZ0ZpSVEYBIWxqD4zcVPda4eQLGr\n3wlPUrHOMrylaA5jaTO78ynVSs3qMwqtLD/IT9Lfkr/5sBQAuDO2kiABdcI8S4XQ\ng+vsBLkHFdoEHYzMshH4eQgRLmqClV7zuES/x2roLoXwoSM++nEtTXxF9/dSaGCM\nDTViIs9U9pwCbOVtZp41EMm0TJP1WxkZ64LFymV+hfUcDRiBDChk96j9leEX12Ze\njraH1Y1p3uG0EILmJ65ve3jpa+Y+GPZxVIhZPD8CNk9a6hqftw5UOgRdTm2OGsgI\nGQIDAQAB\n-----END PUBLIC KEY-----\n"
    static let ecPublic = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEE3aAlnCcf22baF4kgfYKzh0HN5b7\nkYdFTeawr4bbAruw5HIwCbl0s9F9Si2FWnZnotdbJis83WhhkdtV1K+mFw==\n-----END PUBLIC KEY-----\n"
    static let rsa1024Public = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDLJ9D2Lbh+gmGoQ5K3tWbc3Rxt\nDjW8bbfHTqikUwFZRJuRyPGGiwJ5MBARmc0Tc3eDwSlljRf6z4pk4cXfFDNRUAVd\nqXmdiGL1ThK11zu8K3K6Gua762agTuKuOOQuJNKqFUrrVhO9TBSzBaKZc5QEX4Gl\n7Tu9dmQH8gX+VoqxZwIDAQAB\n-----END PUBLIC KEY-----\n"
}
